"""Training end to end on a tiny model: files, checkpoints, exact resume after SIGKILL."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from engine_helpers import TINY, tiny_config

from qhead.engine import (
    atomic_save,
    capture_rng_state,
    load_checkpoint,
    read_checkpoint,
    restore_rng_state,
    train,
)
from qhead.engine.runtime import set_deterministic
from qhead.errors import CheckpointError, ConfigError, QheadError


@pytest.fixture(autouse=True)
def _restore_determinism():
    yield
    set_deterministic(False)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, native_bf16_module) -> Path:
    """Trained under ``amp=auto`` as on a CPU with, then without, native bf16."""
    out = tmp_path_factory.mktemp("run") / "tiny"
    with native_bf16_module.patched():
        return train(tiny_config(out, "plots=true", "tensorboard=true"))


@pytest.fixture
def trained(trained_run: Path, native_bf16_module) -> Iterator[Path]:
    with native_bf16_module.patched():
        yield trained_run


def test_amp_auto_is_bf16_exactly_where_the_cpu_has_it(trained: Path, native_bf16_module):
    final = json.loads((trained / "final.json").read_text())
    expected = "cpu bfloat16" if native_bf16_module.native else "cpu float32"
    assert final["precision"].startswith(expected)


def test_run_dir_contents(trained: Path) -> None:
    for name in ("config.yaml", "metrics.csv", "last.pt", "best.pt", "final.json", "curves.png"):
        assert (trained / name).is_file(), name
    rows = list(csv.DictReader((trained / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert list(rows[0]) == ["epoch", "train_loss", "train_acc", "test_loss", "test_acc",
                             "test_macro_f1", "lr", "seconds"]
    assert list((trained / "tb").glob("events.out.tfevents.*"))
    final = json.loads((trained / "final.json").read_text())
    assert final["accuracy"] == pytest.approx(float(rows[-1]["test_acc"]), abs=1e-6)
    assert final["macro_f1"] == pytest.approx(float(rows[-1]["test_macro_f1"]), abs=1e-6)
    assert final["params_after_backbone"] == 8 * 10 + 10  # GAP + Linear(8, 10)
    assert len(final["confusion_matrix"]) == 10
    assert sum(map(sum, final["confusion_matrix"])) == final["n_test"] == 40


def test_checkpoint_loads_with_weights_only_and_rebuilds_model(trained: Path) -> None:
    raw = torch.load(trained / "last.pt", weights_only=True)
    assert raw["epoch"] == 2 and raw["format"] == "qhead-checkpoint"
    assert set(raw["rng"]) == {"torch", "cuda", "numpy", "python"}
    assert raw["config"]["model"]["backbone"] == "small_cnn"
    loaded = load_checkpoint(trained / "last.pt")
    assert loaded.classes == [str(i) for i in range(10)]
    x = torch.randn(3, 3, 16, 16)
    reference = loaded.model(x)
    fresh = load_checkpoint(trained / "last.pt").model
    assert torch.equal(fresh(x), reference)
    state = {k: v for k, v in loaded.model.state_dict().items()}
    for key, value in raw["model"].items():
        assert torch.equal(state[key], value)


def test_truncated_checkpoint_is_a_clear_error(trained: Path, tmp_path: Path) -> None:
    data = (trained / "last.pt").read_bytes()
    broken = tmp_path / "broken.pt"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(broken)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        read_checkpoint(empty)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a qhead checkpoint"):
        read_checkpoint(foreign)


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch) -> None:
    target = tmp_path / "last.pt"
    atomic_save({"format": "qhead-checkpoint", "value": 1}, target)

    def dies_half_way(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt  # the process is being killed

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"format": "qhead-checkpoint", "value": 2}, target)
    assert torch.load(target, weights_only=True)["value"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left


def test_rng_state_round_trip() -> None:
    import random

    import numpy as np

    state = capture_rng_state()
    first = (torch.rand(2), np.random.rand(2), random.random())
    restore_rng_state(state)
    second = (torch.rand(2), np.random.rand(2), random.random())
    assert torch.equal(first[0], second[0])
    assert np.array_equal(first[1], second[1]) and first[2] == second[2]


def test_existing_run_needs_resume(trained: Path) -> None:
    with pytest.raises(ConfigError, match="--resume"):
        train(tiny_config(trained))


def test_resume_of_finished_run_changes_nothing(trained: Path) -> None:
    before = torch.load(trained / "last.pt", weights_only=True)["model"]
    train(tiny_config(trained), resume=True)
    after = torch.load(trained / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_out_of_memory_names_a_smaller_batch_size(tmp_path, monkeypatch) -> None:
    import qhead.engine.trainer as trainer

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(trainer, "train_step", oom)
    with pytest.raises(QheadError, match=r"batch_size=8.*try batch_size=4"):
        train(tiny_config(tmp_path / "oom"))


def test_missing_data_root_is_a_clear_error(tmp_path) -> None:
    from qhead.errors import DataError

    cfg = tiny_config(tmp_path / "x", "data.name=imagefolder", f"data.root={tmp_path}/nope")
    with pytest.raises(DataError, match="nope does not exist"):
        train(cfg)


def _rows_without_time(path: Path) -> list[dict[str, str]]:
    rows = list(csv.DictReader(path.open()))
    for row in rows:
        row.pop("seconds")
    return rows


def test_resume_after_sigkill_equals_uninterrupted_run(tmp_path) -> None:
    extra = ["epochs=4", "data.max_per_class=8", "--deterministic"]
    overrides = [o for o in extra if not o.startswith("--")]
    reference = train(tiny_config(tmp_path / "reference", *overrides, "deterministic=true"))

    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "qhead", "train", *TINY, "model.head=classical",
               f"out={killed}", *extra]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (killed / "last.pt").exists():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "final.json").exists(), "the run finished before it was killed"
    done = torch.load(killed / "last.pt", weights_only=True)["epoch"]
    assert 1 <= done < 4

    train(tiny_config(killed, *overrides, "deterministic=true"), resume=True)
    ref = torch.load(reference / "last.pt", weights_only=True)
    got = torch.load(killed / "last.pt", weights_only=True)
    assert got["epoch"] == ref["epoch"] == 4
    for key, value in ref["model"].items():
        assert torch.equal(got["model"][key], value), key
    assert _rows_without_time(killed / "metrics.csv") == _rows_without_time(
        reference / "metrics.csv")
    final_ref = json.loads((reference / "final.json").read_text())
    final_got = json.loads((killed / "final.json").read_text())
    for key in ("accuracy", "macro_f1", "test_loss", "confusion_matrix"):
        assert final_got[key] == final_ref[key]
