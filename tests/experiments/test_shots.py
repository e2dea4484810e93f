"""Shot study bookkeeping with a stand-in evaluator (the real one: test_end_to_end.py)."""

import csv
import math

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


def _study(tmp_path, name, accuracy):
    def evaluate(checkpoint, shots, seed):
        return {"accuracy": accuracy - (0.0 if shots is None else 0.01 * seed), "macro_f1": 0.5}

    rows = shot_study([tmp_path / f"{name}.pt"], [10, None], 2, evaluate=evaluate)
    for row in rows:
        row.budget = "epochs=3"  # the checkpoint's run dir does not exist
    write_shots_report(rows, tmp_path / name, plot=False)
    return tmp_path / name


def test_merged_studies_pool_over_checkpoints_without_them(tmp_path):
    from qhead.experiments.shots import merge_shot_studies, read_shots_csv

    a, b = _study(tmp_path, "a", 0.8), _study(tmp_path, "b", 0.6)
    again = read_shots_csv(a / "shots.csv")
    assert [(r.shots, r.accuracy.n, r.budget) for r in again] == [
        (10, 2, "epochs=3"), (None, 1, "epochs=3")
    ]
    assert again[0].accuracy.mean == pytest.approx(0.795)  # 0.8, 0.79
    rows = merge_shot_studies([a, b / "shots.csv"])
    write_shots_report(rows, tmp_path / "pooled", plot=False)
    md = (tmp_path / "pooled/shots.md").read_text()
    assert "Pooled over 2 checkpoints" in md
    assert "| exact | 2 | 70.00 ± 14.14 |" in md  # mean and std of 0.8 and 0.6
    assert "Training budget: epochs=3" in md
    with pytest.raises(DataError, match="in both"):
        merge_shot_studies([a, a])


def test_a_study_written_before_the_budget_column_reads_it_from_shots_md(tmp_path):
    from qhead.experiments.shots import read_shots_csv

    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "shots.csv").write_text(
        "checkpoint,shots,n_sampling_seeds,acc_mean,acc_std,f1_mean,f1_std\n"
        "/gone/last.pt,10,3,0.7,0.01,0.6,0.02\n/gone/last.pt,exact,1,0.72,,0.61,\n"
    )
    (folder / "shots.md").write_text("# Shot-noise study\n\nTraining budget: epochs=50\n")
    rows = read_shots_csv(folder)
    assert [r.budget for r in rows] == ["epochs=50", "epochs=50"]
    assert math.isnan(rows[1].accuracy.std) and rows[1].accuracy.n == 1
    (folder / "shots.csv").write_text("checkpoint,shots\n/gone/last.pt,ten\n")
    with pytest.raises(DataError, match="line 2"):
        read_shots_csv(folder)
    with pytest.raises(DataError, match="no such shot-study table"):
        read_shots_csv(tmp_path / "missing")
