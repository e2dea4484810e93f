"""Tiny grids through the real engine: digits, small_cnn, 8×8 images, 1 epoch, 2 seeds.

The default tests train in-process (``run_plan(in_process=True)``: same preset and
overrides as the subprocess launcher, without an interpreter start per cell); the slow
test drives the ``qhead reproduce`` command line with subprocesses, kills a run and
resumes it.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from qhead.experiments.grid import GridSpec
from qhead.experiments.report import write_report
from qhead.experiments.runner import plan, run_plan
from qhead.experiments.shots import (
    engine_evaluate,
    find_checkpoints,
    shot_study,
    write_shots_report,
)

TINY = {
    "epochs": 1,
    "image_size": 8,
    "batch_size": 16,
    "data.max_per_class": 4,
    "data.num_workers": 0,
    "tensorboard": False,
    "plots": False,
}


def _grid(**budget):
    return GridSpec(["digits"], ["small_cnn"], ["classical", "quantum", "twin"], [0, 1],
                    {**TINY, **budget})


@pytest.fixture(scope="module")
def tiny_grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("grid")
    outcome = run_plan(plan(_grid(), out), in_process=True, cores=1, echo=lambda _: None)
    return out, outcome


def test_grid_trains_every_cell_with_the_budget_recorded(tiny_grid):
    out, outcome = tiny_grid
    assert len(outcome.finished) == 6 and not outcome.failed, [
        r.log.read_text()[-2000:] for r in outcome.failed
    ]
    for arm in ("classical", "quantum", "twin"):
        for seed in (0, 1):
            run_dir = out / f"digits/small_cnn/{arm}/seed{seed}"
            config = yaml.safe_load((run_dir / "config.yaml").read_text())
            assert config["epochs"] == 1 and config["seed"] == seed
            assert config["model"]["image_size"] == config["data"]["image_size"] == 8
            assert config["model"]["head"] == {"classical": "classical", "quantum": "quantum",
                                               "twin": "twin"}[arm]
            assert (run_dir / "final.json").is_file()
    # the same command again finds everything finished
    assert {p.action for p in plan(_grid(), out)} == {"skip"}
    # another budget is not mistaken for these runs
    assert {p.action for p in plan(_grid(epochs=2), out)} == {"conflict"}


def test_lost_final_json_is_resumed_by_the_engine(tiny_grid):
    out, _ = tiny_grid
    run_dir = out / "digits/small_cnn/quantum/seed1"
    before = json.loads((run_dir / "final.json").read_text())
    (run_dir / "final.json").unlink()
    planned = plan(_grid(), out)
    assert [p.action for p in planned].count("resume") == 1
    outcome = run_plan(planned, in_process=True, cores=1, echo=lambda _: None)
    assert len(outcome.finished) == 1 and len(outcome.skipped) == 5
    after = json.loads((run_dir / "final.json").read_text())
    assert after["accuracy"] == pytest.approx(before["accuracy"])
    with (run_dir / "metrics.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 1  # no epoch trained twice


def test_report_on_real_runs(tiny_grid, tmp_path):
    out, _ = tiny_grid
    files = write_report(out, tmp_path / "report")
    with files.summary_csv.open() as handle:
        rows = {r["arm"]: r for r in csv.DictReader(handle)}
    assert set(rows) == {"classical", "quantum", "twin"}
    for arm, row in rows.items():
        assert row["n"] == "2" and row["seeds"] == "0 1"
        final = json.loads((out / f"digits/small_cnn/{arm}/seed0/final.json").read_text())
        assert int(row["params_head"]) == final["params_after_backbone"]
    acc = {(a, s): json.loads((out / f"digits/small_cnn/{a}/seed{s}/final.json").read_text())
           ["accuracy"] for a in ("quantum", "classical") for s in (0, 1)}
    paired = [acc[("quantum", s)] - acc[("classical", s)] for s in (0, 1)]
    assert rows["quantum"]["dacc_n"] == "2"
    assert float(rows["quantum"]["dacc_mean"]) == pytest.approx(sum(paired) / 2, abs=1e-6)
    assert "epochs=1" in rows["quantum"]["budget"] and "image_size=8" in rows["quantum"]["budget"]
    names = sorted(p.name for p in files.plots)
    assert names == ["confusion_digits_small_cnn.png", "curves_digits_small_cnn.png",
                     "scores_digits_small_cnn.png"]


def test_shot_study_on_real_checkpoints(tiny_grid, tmp_path):
    out, _ = tiny_grid
    checkpoints = find_checkpoints([out])
    assert [c.parent.name for c in checkpoints] == ["seed0", "seed1"]
    assert all(c.parent.parent.name == "quantum" for c in checkpoints)
    rows = shot_study(checkpoints, [10, None], 2, evaluate=engine_evaluate)
    written = write_shots_report(rows, tmp_path / "shots")
    assert [p.name for p in written] == ["shots.md", "shots.csv", "shots.png"]
    by = {(r.checkpoint, r.shots): r for r in rows}
    for checkpoint in checkpoints:
        # last.pt is the model of final.json: exact evaluation reproduces its accuracy
        final = json.loads((checkpoint.parent / "final.json").read_text())
        assert by[(checkpoint, None)].accuracy.mean == pytest.approx(final["accuracy"])
        assert by[(checkpoint, 10)].accuracy.n == 2
    with (tmp_path / "shots/shots.csv").open() as handle:
        assert [r["shots"] for r in csv.DictReader(handle)] == ["10", "exact"] * 2


@pytest.mark.slow
def test_reproduce_cli_kill_resume_report_shots(tmp_path):
    """qhead reproduce with 2 jobs, SIGKILL mid-grid, re-run resumes, then report + shots."""
    out = tmp_path / "runs"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    base = [sys.executable, "-m", "qhead", "reproduce", "--datasets", "digits",
            "--backbones", "small_cnn", "--heads", "classical,quantum", "--seeds", "2",
            "--epochs", "3", "--image-size", "8", "--out", str(out), "--jobs", "2",
            "data.max_per_class=8", "data.num_workers=0", "tensorboard=false"]
    process = subprocess.Popen(base, env=env, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    checkpoints = [out / f"digits/small_cnn/{a}/seed0/last.pt" for a in ("classical", "quantum")]
    while time.monotonic() < deadline and not any(p.exists() for p in checkpoints):
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the grid and its training processes
    process.wait()
    first = subprocess.run([*base, "--dry-run"], capture_output=True, text=True, env=env)
    assert first.returncode == 0
    assert "resume" in first.stdout
    done = subprocess.run(base, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    # the killed run continued from its checkpoint instead of starting over
    assert any("resumed from" in p.with_name("train.log").read_text() for p in checkpoints)
    for run_dir in out.glob("digits/small_cnn/*/seed*"):
        with (run_dir / "metrics.csv").open() as handle:
            assert [r["epoch"] for r in csv.DictReader(handle)] == ["1", "2", "3"]
    again = subprocess.run(base, capture_output=True, text=True, env=env, timeout=600)
    assert "4 cell(s): 4 skip" in again.stdout
    report = subprocess.run([sys.executable, "-m", "qhead", "report", str(out)],
                            capture_output=True, text=True, env=env)
    assert report.returncode == 0 and (out / "report/summary.csv").is_file()
    shots = subprocess.run([sys.executable, "-m", "qhead", "shots", str(out), "--shots",
                            "10,exact", "--sampling-seeds", "2"],
                           capture_output=True, text=True, env=env)
    assert shots.returncode == 0, shots.stderr
    assert (out / "shots/shots.csv").is_file()


def test_cached_evaluation_gives_the_engines_numbers_with_one_backbone_pass(
    tiny_grid, monkeypatch
):
    from qhead.experiments.shots import CachedEvaluate
    from qhead.models.classifier import Classifier

    out, _ = tiny_grid
    checkpoint = find_checkpoints([out])[0]
    settings = [(10, 0), (10, 1), (3, 0), (None, 0)]
    reference = [engine_evaluate(checkpoint, shots, seed) for shots, seed in settings]
    calls = []
    original = Classifier.forward_features

    def counting(self, x):
        calls.append(x.shape[0])
        return original(self, x)

    monkeypatch.setattr(Classifier, "forward_features", counting)
    cached = CachedEvaluate()
    results = [cached(checkpoint, shots, seed) for shots, seed in settings]
    assert sum(calls) == reference[0]["n"]  # the backbone saw each test image once
    for ours, theirs in zip(results, reference, strict=True):
        for key in ("accuracy", "macro_f1", "loss", "confusion_matrix", "shots", "shots_seed"):
            assert ours[key] == theirs[key], key
    # different sampling seeds really sample differently (the cache keeps the head live)
    assert results[0]["loss"] != results[1]["loss"]
