"""The run record: written by today's trainer, and read back for run dirs of older code.

``data/run-84a2461`` holds the small files of a run dir written by ``qhead train`` at
commit 84a2461 (``qhead train data.name=digits model.backbone=small_cnn image_size=16
epochs=1``; checkpoints, curves and TensorBoard logs left out).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from engine_helpers import tiny_config

from qhead import __version__
from qhead.engine import record, train
from qhead.errors import DataError

OLD_RUN = Path(__file__).parent / "data" / "run-84a2461"


def test_old_run_dir_loads() -> None:
    raw = json.loads((OLD_RUN / record.FINAL_FILE).read_text())
    run = record.read_record(OLD_RUN)
    assert run.finished and run.cell is None
    assert run.accuracy == raw["accuracy"] and run.macro_f1 == raw["macro_f1"]
    assert run.params_head == 98
    assert run.classes == [str(d) for d in range(10)]
    # rows true, columns predicted: each row sums to the class's test support
    assert [sum(row) for row in run.confusion] == [
        raw["per_class"][c]["support"] for c in run.classes
    ]
    assert sum(map(sum, run.confusion)) == raw["n_test"] == 359
    assert run.versions == {"torch": raw["torch"]}  # older runs recorded torch only
    assert run.config["model"]["backbone"] == "small_cnn" and run.config["epochs"] == 1
    assert run.column(record.TEST_ACC) == [(1, pytest.approx(0.520891))]
    assert run.best_test_accuracy() == (pytest.approx(0.520891), 1)


def test_best_test_accuracy_skips_epochs_without_evaluation(tmp_path: Path) -> None:
    path = tmp_path / record.METRICS_FILE
    rows = [{"epoch": 1, "test_acc": 0.5}, {"epoch": 2}, {"epoch": 3, "test_acc": 0.75},
            {"epoch": 4, "test_acc": 0.75}, {"epoch": 5, "test_acc": 0.625}]
    for row in rows:
        record.write_metrics_row(path, row)
    run = record.read_record(tmp_path)
    assert not run.finished
    assert run.column(record.TEST_ACC) == [(1, 0.5), (3, 0.75), (4, 0.75), (5, 0.625)]
    assert run.best_test_accuracy() == (0.75, 3)  # the first epoch that reached it
    with pytest.raises(DataError, match="not finished"):
        _ = run.accuracy


def test_final_json_values_are_checked(tmp_path: Path) -> None:
    record.write_final(tmp_path, {"accuracy": 86.1, "macro_f1": 0.8})
    with pytest.raises(DataError, match=r"accuracy must be a fraction in \[0, 1\]"):
        _ = record.read_record(tmp_path).accuracy
    record.write_final(tmp_path, {"acc": 0.8, "macro_f1": 0.8})
    with pytest.raises(DataError, match="needs accuracy"):
        _ = record.read_record(tmp_path).accuracy
    (tmp_path / record.FINAL_FILE).write_text("{not json")
    with pytest.raises(DataError, match="unreadable"):
        record.read_record(tmp_path)


def test_trainer_writes_the_record(tmp_path: Path) -> None:
    out = train(tiny_config(tmp_path / "run", "epochs=1", "amp=off"))
    names = {p.name for p in out.iterdir()}
    assert {record.CONFIG_FILE, record.METRICS_FILE, record.FINAL_FILE,
            record.LAST_CHECKPOINT, record.BEST_CHECKPOINT} <= names
    run = record.read_record(out)
    assert run.versions["qhead"] == __version__ and run.versions["torch"] == torch.__version__
    assert [c for c in run.metrics[0]] == list(record.METRICS_COLUMNS)
    assert run.column(record.TEST_ACC) == [(1, pytest.approx(run.accuracy, abs=1e-6))]
    assert run.params_head is not None and len(run.confusion) == len(run.classes) == 10
    assert run.config["out"] == str(tmp_path / "run")
