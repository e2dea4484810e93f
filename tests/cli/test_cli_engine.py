"""train → evaluate → predict through ``qhead.cli.main``, and clear errors for bad input."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from qhead.cli import main
from qhead.engine import load_config

REPO = Path(__file__).resolve().parents[2]

TINY = [
    "data.name=digits", "model.backbone=small_cnn", "model.backbone_options.channels=[4,8,8]",
    "image_size=16", "data.max_per_class=4", "data.num_workers=0", "batch_size=8",
    "tensorboard=false", "plots=false", "epochs=2",
]  # fmt: skip


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, native_bf16_module) -> Path:
    """Trained under ``amp=auto`` as on a CPU with, then without, native bf16."""
    out = tmp_path_factory.mktemp("cli") / "quantum"
    with native_bf16_module.patched():
        assert main(["train", *TINY, "model.head=quantum", "--out", str(out), "--threads", "1",
                     "--no-progress"]) == 0
    return out


@pytest.fixture
def run_dir(trained_run: Path, native_bf16_module) -> Iterator[Path]:
    """The trained run; evaluate/predict (``amp=auto``) see the CPU it was trained on."""
    with native_bf16_module.patched():
        yield trained_run


def test_train_writes_a_complete_run(run_dir: Path) -> None:
    saved = load_config(run_dir / "config.yaml")
    assert saved.model.head == "quantum" and saved.threads == 1 and saved.epochs == 2
    final = json.loads((run_dir / "final.json").read_text())
    assert final["params_after_backbone"] == 5 + 5 * 10 + 10  # 8x2x2 map: 5 qubits + Linear(5, 10)


def test_evaluate_matches_training_metrics_and_writes_files(run_dir: Path, capsys) -> None:
    assert main(["evaluate", str(run_dir / "last.pt")]) == 0
    printed = capsys.readouterr().out
    assert "macro-F1" in printed and "precision" in printed
    result = json.loads((run_dir / "last.eval.json").read_text())
    final = json.loads((run_dir / "final.json").read_text())
    assert result["accuracy"] == pytest.approx(final["accuracy"])
    assert result["macro_f1"] == pytest.approx(final["macro_f1"])
    assert set(result["per_class"]["3"]) == {"precision", "recall", "f1", "support"}
    rows = list(csv.reader((run_dir / "last.eval.confusion.csv").open()))
    assert rows[0][1:] == [str(i) for i in range(10)]
    assert sum(int(v) for row in rows[1:] for v in row[1:]) == result["n"] == 40
    assert (run_dir / "last.eval.confusion.png").stat().st_size > 1000


def test_evaluate_with_shots_is_seeded(run_dir: Path, tmp_path: Path) -> None:
    args = ["evaluate", str(run_dir / "best.pt"), "--shots", "20", "--out", str(tmp_path)]
    assert main([*args, "--shots-seed", "1"]) == 0
    first = json.loads((tmp_path / "best.eval.shots20.json").read_text())
    assert main([*args, "--shots-seed", "1"]) == 0
    again = json.loads((tmp_path / "best.eval.shots20.json").read_text())
    assert first["shots"] == 20 and first["loss"] == again["loss"]
    assert main([*args, "--shots-seed", "2"]) == 0
    other = json.loads((tmp_path / "best.eval.shots20.json").read_text())
    assert other["loss"] != first["loss"]  # 20 shots: the estimate really is sampled


def _write_digit_png(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(path)


def test_predict_reports_bad_files_and_predicts_the_others(run_dir: Path, tmp_path, capsys):
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    _write_digit_png(folder / "one.png", 1)
    _write_digit_png(folder / "sub" / "two.jpg", 2)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "preds.csv"
    code = main(["predict", str(run_dir / "best.pt"), str(folder), str(tmp_path / "gone.png"),
                 "--out", str(out)])
    assert code == 1  # some files failed
    captured = capsys.readouterr()
    assert "broken.png" in captured.err and "gone.png" in captured.err
    rows = {Path(r["path"]).name: r for r in csv.DictReader(out.open())}
    assert set(rows) == {"one.png", "two.jpg", "broken.png", "gone.png"}
    assert rows["broken.png"]["status"] == "error" and rows["broken.png"]["error"]
    for name in ("one.png", "two.jpg"):
        probs = [float(rows[name][f"prob_{i}"]) for i in range(10)]
        assert rows[name]["status"] == "ok"
        assert sum(probs) == pytest.approx(1.0, abs=1e-4)
        assert rows[name]["predicted"] == str(int(np.argmax(probs)))


def test_predict_agrees_with_the_model(run_dir: Path, tmp_path, native_bf16_module) -> None:
    from qhead.data import load_image
    from qhead.engine import load_checkpoint, predict

    image = tmp_path / "x.png"
    _write_digit_png(image, 3)
    row = predict(run_dir / "best.pt", [image])[0]
    model = load_checkpoint(run_dir / "best.pt").model
    x = load_image(image, 16)[None]
    with torch.no_grad():
        float32 = torch.softmax(model(x), dim=1)[0]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bfloat16 = torch.softmax(model(x).float(), dim=1)[0]
    # amp=auto: bf16 autocast exactly where the CPU has native bf16
    expected = bfloat16 if native_bf16_module.native else float32
    assert row["confidence"] == pytest.approx(float(expected.max()), abs=1e-6)
    # either way within bf16's resolution (8 bits of mantissa) of the float32 model
    assert row["confidence"] == pytest.approx(float(float32.max()), abs=2e-2)


def _error(capsys, argv: list[str]) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_bad_inputs_give_one_line_errors(run_dir: Path, tmp_path: Path, capsys) -> None:
    ckpt = str(run_dir / "best.pt")
    err = _error(capsys, ["train", *TINY, "model.head=quantum", "model.head_options.lyers=2",
                          "--out", str(tmp_path / "a")])
    assert "lyers" in err
    err = _error(capsys, ["train", *TINY, "optimiser=sgd", "--out", str(tmp_path / "a")])
    assert "unknown config key 'optimiser'" in err
    err = _error(capsys, ["train", *TINY, "data.name=imagefolder",
                          f"data.root={tmp_path / 'no-such-dir'}", "--out", str(tmp_path / "b")])
    assert "no-such-dir does not exist" in err
    err = _error(capsys, ["train", "-c", str(tmp_path / "missing.yaml")])
    assert "missing.yaml does not exist" in err

    two = tmp_path / "two-classes"
    for name in ("cat", "dog"):
        (two / name).mkdir(parents=True)
        for i in range(3):
            _write_digit_png(two / name / f"{i}.png", i)
    err = _error(capsys, ["evaluate", ckpt, "--data", "name=imagefolder", "--data-root", str(two)])
    assert "predicts 10 classes" in err and "has 2 classes" in err

    truncated = tmp_path / "cut.pt"
    truncated.write_bytes((run_dir / "best.pt").read_bytes()[:1000])
    err = _error(capsys, ["evaluate", str(truncated)])
    assert "truncated or corrupt" in err
    err = _error(capsys, ["evaluate", str(tmp_path / "none.pt")])
    assert "does not exist" in err
    err = _error(capsys, ["evaluate", ckpt, "--data", "colour=red"])
    assert "colour" in err
    err = _error(capsys, ["evaluate", ckpt, "--shots", "0"])
    assert "shots" in err
    (tmp_path / "empty").mkdir()
    err = _error(capsys, ["predict", ckpt, str(tmp_path / "empty")])
    assert "no input images" in err


def test_resume_with_out_only_reuses_the_saved_config(run_dir: Path, capsys) -> None:
    assert main(["train", "--out", str(run_dir), "--resume", "--no-progress"]) == 0
    assert "resumed from" in capsys.readouterr().out


def test_example_configs_load() -> None:
    files = sorted((REPO / "configs").glob("*.yaml"))
    assert len(files) >= 3
    for path in files:
        load_config(path, overrides=["data.root=/somewhere"])


def test_demo_trains_both_heads(tmp_path, capsys, native_bf16: bool) -> None:
    from qhead.engine.demo import format_table, run_demo

    rows = run_demo(tmp_path / "demo", epochs=1, image_size=16, progress=False,
                    overrides=["data.max_per_class=3", "model.backbone_options.channels=[4,8,8]"])
    assert [r.head for r in rows] == ["classical", "quantum"]
    assert rows[1].params_after_backbone == 5 + 5 * 10 + 10
    assert all(0.0 <= r.accuracy <= 1.0 for r in rows)
    assert (tmp_path / "demo" / "curves.png").is_file()
    table = format_table(rows)
    assert "| quantum | 65 |" in table
    precision = "bfloat16" if native_bf16 else "float32"  # the table says which one ran
    assert [r.precision for r in rows] == [precision] * 2
    assert table.splitlines()[0].endswith("| precision |")
    assert all(line.endswith(f"| {precision} |") for line in table.splitlines()[2:])


@pytest.mark.slow
def test_demo_command_default_budget(tmp_path, capsys) -> None:
    assert main(["demo", "--out", str(tmp_path / "demo"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "| classical | 650 |" in out and "| quantum | 120 |" in out
