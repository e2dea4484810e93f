"""What a new user runs into first: resuming with overrides, a split that lacks a class,
relative data paths, and the small things the commands print (issue 12)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from qhead.cli import main

TINY = [
    "model.backbone=small_cnn", "model.backbone_options.channels=[4,8,8]", "image_size=16",
    "data.num_workers=0", "batch_size=8", "tensorboard=false", "plots=false", "threads=1",
    "model.head=classical",
]  # fmt: skip


def _write_png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(path)


def _quiet_main(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory) -> tuple[Path, str]:
    """One epoch on an image folder whose test/ lacks class 'c', trained from the folder's
    parent with a *relative* ``data.root``; returns (run dir, what train printed)."""
    base = tmp_path_factory.mktemp("first-contact")
    for i in range(4):
        for name in ("a", "b", "c"):
            _write_png(base / "pics" / "train" / name / f"{i}.png", 10 * i + ord(name))
        for name in ("a", "b"):
            _write_png(base / "pics" / "test" / name / f"{i}.png", 100 + 10 * i + ord(name))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(base)
        code, printed = _quiet_main(["train", *TINY, "data.name=imagefolder", "data.root=pics",
                                     "epochs=1", "--out", str(base / "run"), "--no-progress"])
    assert code == 0, printed
    return base / "run", printed


def test_a_split_without_a_class_is_named_at_build_time(folder_run) -> None:
    run, printed = folder_run
    warning = [line for line in printed.splitlines() if "no image of class" in line]
    assert warning == [
        "warning: the test split has no image of class 'c' (classes: a, b, c); macro-F1 "
        "averages over all 3 classes and scores F1 = 0 for it"
    ]
    final = json.loads((run / "final.json").read_text())
    # documented: the mean runs over every class of the dataset, the absent one at F1 = 0
    assert final["per_class"]["c"]["support"] == 0 and final["per_class"]["c"]["f1"] == 0.0
    f1 = [final["per_class"][name]["f1"] for name in ("a", "b", "c")]
    assert final["macro_f1"] == pytest.approx(sum(f1) / 3, abs=1e-12)


def test_missing_class_warnings_cover_both_splits() -> None:
    from qhead.engine.metrics import missing_class_warnings

    messages = missing_class_warnings({"train": [0, 0], "test": [0, 1, 2], "x": None},
                                      ["a", "b", "c"])
    assert messages == ["the train split has no image of classes 'b', 'c' (classes: a, b, c); "
                        "the model never sees an example of them"]


def test_data_root_is_stored_absolute_and_evaluate_works_elsewhere(folder_run, tmp_path,
                                                                   monkeypatch) -> None:
    import yaml

    run, _ = folder_run
    root = yaml.safe_load((run / "config.yaml").read_text())["data"]["root"]
    assert Path(root).is_absolute() and Path(root, "train", "c").is_dir()
    assert torch.load(run / "last.pt", weights_only=True)["config"]["data"]["root"] == root
    monkeypatch.chdir(tmp_path)  # a directory where the relative "pics" does not exist
    code, printed = _quiet_main(["evaluate", str(run / "last.pt"), "--out", str(tmp_path)])
    assert code == 0 and "macro-F1" in printed


def test_a_relative_root_of_an_older_checkpoint_gets_a_hint(folder_run, tmp_path, capsys,
                                                            monkeypatch) -> None:
    run, _ = folder_run
    raw = torch.load(run / "last.pt", weights_only=True)
    raw["config"]["data"]["root"] = "pics"  # as checkpoints before the fix stored it
    old = tmp_path / "old.pt"
    torch.save(raw, old)
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", str(old)]) == 1
    err = capsys.readouterr().err
    assert "data.root 'pics'" in err and "is relative" in err and "--data-root" in err
    assert main(["evaluate", str(old), "--data-root", str(run.parent / "pics"),
                 "--out", str(tmp_path)]) == 0


def test_one_epoch_is_singular(folder_run) -> None:
    _, printed = folder_run
    assert "after 1 epoch in" in printed and "1 epochs" not in printed


def test_evaluate_prints_the_confusion_matrix(folder_run, tmp_path, capsys) -> None:
    run, _ = folder_run
    code, printed = _quiet_main(["evaluate", str(run / "last.pt"), "--out", str(tmp_path)])
    assert code == 0
    assert "qhead evaluate: warning: the test split has no image of class 'c'" in (
        capsys.readouterr().err)
    matrix = json.loads((tmp_path / "last.eval.json").read_text())["confusion_matrix"]
    lines = printed.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("true \\ predicted"))
    assert lines[header].split()[-3:] == ["a", "b", "c"]
    for name, row, line in zip("abc", matrix, lines[header + 1:header + 4], strict=True):
        assert line.split() == [name, *map(str, row)]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    """One finished epoch of a tiny classical run on digits."""
    out = tmp_path_factory.mktemp("resume") / "run"
    base = [*TINY, "data.name=digits", "data.max_per_class=3", "epochs=1", "--no-progress"]
    assert _quiet_main(["train", *base, "--out", str(out)])[0] == 0
    return out


@pytest.mark.parametrize("where", ["--out", "out="])
def test_resume_applies_overrides_to_the_runs_own_config(digits_run, tmp_path, where) -> None:
    out = tmp_path / "run"
    shutil.copytree(digits_run, out)
    run_dir = ["--out", str(out), "epochs=2"] if where == "--out" else [f"out={out}", "epochs=2"]
    code, printed = _quiet_main(["train", "--resume", "--no-progress", *run_dir])
    assert code == 0, printed
    assert "resumed from" in printed and "after epoch 1" in printed
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 2
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]


@pytest.mark.parametrize(("override", "named"), [
    ("model.head=twin", "model.head: 'classical' -> 'twin'"),
    ("lr=0.01", "lr: 0.001 -> 0.01"),
    ("data.max_per_class=4", "data.max_per_class: 3 -> 4"),
])
def test_resume_refuses_an_override_that_changes_the_model_or_data(digits_run, capsys, override,
                                                                   named) -> None:
    capsys.readouterr()
    code, _ = _quiet_main(["train", "--out", str(digits_run), "--resume", override,
                           "--no-progress"])
    err = capsys.readouterr().err
    assert code != 0 and named in err and "new --out" in err, err
    assert torch.load(digits_run / "last.pt", weights_only=True)["epoch"] == 1  # untouched


def test_predict_on_a_missing_path_is_a_plain_error(folder_run, tmp_path, capsys) -> None:
    run, _ = folder_run
    out = tmp_path / "preds.csv"
    code = main(["predict", str(run / "last.pt"), str(tmp_path / "typo.png"), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code != 0 and not out.exists()
    assert "no such file or folder" in err and "typo.png" in err and "Traceback" not in err


def test_learning_curve_ticks_are_whole_epochs() -> None:
    import matplotlib.pyplot as plt

    from qhead.engine.metrics import learning_curves_figure

    rows = [{"epoch": str(e), "train_loss": "1.0", "test_loss": "1.1", "test_acc": "0.5",
             "test_macro_f1": "0.4"} for e in (1, 2)]
    fig = learning_curves_figure({"run": rows})
    try:
        for ax in fig.axes:
            ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
            assert ticks and all(float(t).is_integer() for t in ticks), ticks
    finally:
        plt.close(fig)


def test_audit_points_at_the_json_only_when_it_was_written(tmp_path, capsys) -> None:
    for i in range(3):  # three exact duplicates in each class: more than --max-items 1
        for name in ("x", "y"):
            _write_png(tmp_path / "pics" / name / f"{i}.png", ord(name))
    assert main(["audit", str(tmp_path / "pics"), "--max-items", "0"]) == 0
    printed = capsys.readouterr().out
    assert "more (" in printed and "JSON report" not in printed and "--format json" in printed
    assert main(["audit", str(tmp_path / "pics"), "--max-items", "0",
                 "--out", str(tmp_path / "audit")]) == 0
    written = (tmp_path / "audit" / "audit.md").read_text()
    assert f"all of them in {tmp_path / 'audit' / 'audit.json'}" in written
    assert (tmp_path / "audit" / "audit.json").is_file()
