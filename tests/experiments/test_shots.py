"""Shot study bookkeeping with a stand-in evaluator (the real one: test_end_to_end.py)."""

import csv

import pytest

from qhead.errors import ConfigError, DataError
from qhead.experiments.shots import find_checkpoints, parse_shots, shot_study, write_shots_report


def test_parse_shots():
    assert parse_shots("10, 100,exact,10") == [10, 100, None]
    for bad in ("0", "-5", "ten", ""):
        with pytest.raises(ConfigError, match="--shots"):
            parse_shots(bad)


def test_study_table_and_plot(tmp_path):
    calls = []

    def fake_evaluate(checkpoint, shots, seed):
        calls.append((checkpoint.name, shots, seed))
        if shots is None:
            return {"accuracy": 0.9, "macro_f1": 0.8}
        # noisier with fewer shots, different per sampling seed
        return {"accuracy": 0.9 - 1.0 / shots - 0.01 * seed, "macro_f1": 0.8}

    ckpts = [tmp_path / "a.pt", tmp_path / "b.pt"]
    rows = shot_study(ckpts, [10, 100, None], 3, evaluate=fake_evaluate)
    # exact is deterministic: evaluated once per checkpoint
    assert len(calls) == 2 * (3 + 3 + 1)
    by = {(r.checkpoint.name, r.shots): r for r in rows}
    r = by[("a.pt", 10)]
    assert r.accuracy.n == 3 and r.seeds == [0, 1, 2]
    assert r.accuracy.mean == pytest.approx(0.79)  # 0.8, 0.79, 0.78
    assert r.accuracy.std == pytest.approx(0.01)
    assert by[("b.pt", None)].accuracy.n == 1

    written = write_shots_report(rows, tmp_path / "out")
    assert [p.name for p in written] == ["shots.md", "shots.csv", "shots.png"]
    with (tmp_path / "out/shots.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert [t["shots"] for t in table[:3]] == ["10", "100", "exact"]
    assert float(table[0]["acc_mean"]) == pytest.approx(0.79)
    md = (tmp_path / "out/shots.md").read_text()
    assert "| 10 | 3 | 79.00 ± 1.00 | 80.00 ± 0.00 |" in md
    assert "Pooled over 2 checkpoints" in md


def test_find_checkpoints_takes_last_of_the_quantum_arm(tmp_path):
    for arm in ("classical", "quantum"):
        for seed in (0, 1):
            run = tmp_path / f"busi/resnet18/{arm}/seed{seed}"
            run.mkdir(parents=True)
            (run / "best.pt").write_bytes(b"")
    (tmp_path / "busi/resnet18/quantum/seed1/last.pt").write_bytes(b"")
    found = find_checkpoints([tmp_path])
    # last.pt (what final.json reports) before best.pt (selected on the test split)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "busi/resnet18/quantum/seed0/best.pt",
        "busi/resnet18/quantum/seed1/last.pt",
    ]
    with pytest.raises(DataError, match="no such checkpoint"):
        find_checkpoints([tmp_path / "nope"])


def test_evaluation_without_metrics_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no accuracy"):
        shot_study([tmp_path / "a.pt"], [10], 1, evaluate=lambda *_: {"loss": 1.0})
    with pytest.raises(ConfigError, match="--sampling-seeds"):
        shot_study([tmp_path / "a.pt"], [10], 0, evaluate=lambda *_: {})
