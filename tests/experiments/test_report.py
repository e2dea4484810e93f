"""``qhead report`` on fabricated run dirs (the layout the engine and reproduce write)."""

import csv
import json
from pathlib import Path

import pytest
import yaml

from qhead.errors import DataError
from qhead.experiments.grid import Cell, GridSpec, cell_record, write_cell_record
from qhead.experiments.report import write_report
from qhead.experiments.results import collect_runs, load_run

# accuracy / macro-F1 per (arm, seed); quantum − classical accuracy diffs 0.01..0.03
SCORES = {
    ("classical", 0): (0.70, 0.60),
    ("classical", 1): (0.72, 0.61),
    ("classical", 2): (0.74, 0.65),
    ("quantum", 0): (0.71, 0.62),
    ("quantum", 1): (0.74, 0.60),
    ("quantum", 2): (0.77, 0.69),
    ("twin", 0): (0.70, 0.60),
    ("twin", 1): (0.72, 0.61),
}


def _make_runs(root, scores=SCORES, with_curves=True):
    grid = GridSpec(["busi"], ["resnet18"], ["classical", "quantum", "twin"], [0, 1, 2],
                    {"train.epochs": 3, "data.image_size": 64})
    for (arm, seed), (acc, f1) in scores.items():
        cell = Cell("busi", "resnet18", arm, seed)
        run_dir = cell.run_dir(root)
        write_cell_record(run_dir, cell_record(cell, grid.cell_overrides(cell)))
        config = {"train": {"epochs": 3, "batch_size": 32, "lr": 0.001},
                  "data": {"image_size": 64}, "seed": seed}
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
        final = {"accuracy": acc, "macro_f1": f1,
                 "params_after_backbone": {"classical": 1539, "quantum": 63, "twin": 93}[arm],
                 "confusion_matrix": [[5, 1, 0], [1, 3, 1], [0, 0, 4]],
                 "classes": ["benign", "malignant", "normal"]}
        (run_dir / "final.json").write_text(json.dumps(final))
        if with_curves:
            (run_dir / "metrics.csv").write_text(
                "epoch,train_loss,test_accuracy,note\n1,1.0,0.5,a\n2,0.8,0.6,b\n3,0.7,0.7,c\n"
            )


def test_load_run_reads_identity_budget_and_metrics(tmp_path):
    _make_runs(tmp_path)
    run = load_run(tmp_path / "busi/resnet18/quantum/seed2")
    assert (run.dataset, run.backbone, run.arm, run.seed) == ("busi", "resnet18", "quantum", 2)
    assert (run.accuracy, run.macro_f1, run.params_head) == (0.77, 0.69, 63)
    assert run.budget == {"data.image_size": 64, "train.batch_size": 32, "train.epochs": 3,
                          "train.lr": 0.001}
    assert run.confusion[1] == [1, 3, 1]


def test_report_tables_statistics_and_files(tmp_path):
    _make_runs(tmp_path / "runs")
    # an unfinished run is listed, not counted
    unfinished = tmp_path / "runs/busi/resnet18/twin/seed2"
    unfinished.mkdir(parents=True)
    (unfinished / "config.yaml").write_text("seed: 2\n")
    files = write_report(tmp_path / "runs", tmp_path / "out")

    with files.summary_csv.open() as handle:
        rows = {r["arm"]: r for r in csv.DictReader(handle)}
    assert set(rows) == {"classical", "quantum", "twin"}
    q = rows["quantum"]
    assert q["n"] == "3" and q["seeds"] == "0 1 2" and q["params_head"] == "63"
    assert float(q["acc_mean"]) == pytest.approx(0.74)
    assert float(q["acc_std"]) == pytest.approx(0.03)  # 0.71, 0.74, 0.77
    # diffs 0.01, 0.02, 0.03: mean 0.02, s 0.01, half = 4.302653·0.01/√3 = 0.0248414
    assert float(q["dacc_mean"]) == pytest.approx(0.02)
    assert float(q["dacc_low"]) == pytest.approx(0.02 - 0.0248414, abs=1e-6)
    assert float(q["dacc_high"]) == pytest.approx(0.02 + 0.0248414, abs=1e-6)
    assert q["dacc_significant"] == "false"
    assert float(q["paper_acc"]) == pytest.approx(0.8608)
    assert q["paper_params"] == "63"
    assert rows["classical"]["dacc_n"] == ""  # the reference has no difference to itself
    twin = rows["twin"]
    assert twin["n"] == "2" and twin["paper_acc"] == ""
    assert float(twin["dacc_mean"]) == 0.0 and twin["dacc_significant"] == "false"
    assert "train.epochs=3" in q["budget"] and "data.image_size=64" in q["budget"]

    md = files.markdown.read_text()
    assert "| BUSI | quantum | 63 | 3 | 74.00 ± 3.00 |" in md
    assert "+2.00 [-0.48, +4.48]" in md
    assert "| 86.08 | 84.63 |" in md  # the paper's numbers beside ours
    assert "train.epochs=3" in md and "paper: 200 epochs" in md
    assert "quantum vs classical: difference not significant at 95%" in md
    assert "unfinished" in md and "twin/seed2" in md

    with files.runs_csv.open() as handle:
        assert len(list(csv.DictReader(handle))) == len(SCORES)
    names = sorted(p.name for p in files.plots)
    assert names == ["confusion_busi_resnet18.png", "curves_busi_resnet18.png",
                     "scores_busi_resnet18.png"]
    for path in files.plots:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_significant_difference_sentence(tmp_path):
    scores = {("classical", s): (0.70, 0.70) for s in range(3)}
    scores.update({("quantum", s): (0.80 + 0.01 * s, 0.75) for s in range(3)})
    _make_runs(tmp_path, scores, with_curves=False)
    md = write_report(tmp_path, plots=False).markdown.read_text()
    assert "quantum better than classical by 11.00 pp" in md
    # constant difference 5 pp: zero-width interval, still a real difference
    assert "macro-F1: quantum better than classical by 5.00 pp" in md


def test_controls_are_paired_against_the_quantum_model(tmp_path):
    # twin − quantum on the common seeds 0, 1: accuracy 0.70 − 0.71, 0.72 − 0.74 = −1, −2 pp
    # (mean −1.5, s = 0.7071, half-width 12.706·0.7071/√2 = 6.353); macro-F1 −2, +1 pp
    _make_runs(tmp_path, with_curves=False)
    md = write_report(tmp_path, plots=False).markdown.read_text()
    section = md.split("## Controls against the quantum model (seed-paired)", 1)[1]
    table_row = next(line for line in section.splitlines() if line.startswith("| BUSI"))
    assert table_row == ("| BUSI | paper split | ResNet-18 | twin | 93 | 2 "
                         "| -1.50 [-7.85, +4.85] | -0.50 [-19.56, +18.56] |")
    assert "Acc: twin vs quantum: difference not significant at 95% (-1.50 pp" in md
    # the classical and quantum arms themselves are not controls
    assert "| classical |" not in section.split("## Conclusions")[0]
    # without a quantum arm there is nothing to pair the controls with
    only_classical = {k: v for k, v in SCORES.items() if k[0] != "quantum"}
    _make_runs(tmp_path / "no-quantum", only_classical, with_curves=False)
    md = write_report(tmp_path / "no-quantum", plots=False).markdown.read_text()
    assert "Controls against the quantum model" not in md


def test_report_without_runs_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no finished run"):
        write_report(tmp_path)
    with pytest.raises(DataError, match="not a directory"):
        write_report(tmp_path / "missing")


def test_bad_final_json_is_listed_not_fatal(tmp_path):
    _make_runs(tmp_path, {("classical", 0): (0.7, 0.6)})
    bad = tmp_path / "busi/resnet18/quantum/seed0"
    bad.mkdir(parents=True)
    (bad / "final.json").write_text(json.dumps({"loss": 1.0}))
    runs, problems = collect_runs(tmp_path)
    assert len(runs) == 1
    assert len(problems) == 1 and "needs accuracy" in problems[0]


def test_params_computed_from_the_run_config_when_not_recorded(tmp_path):
    run_dir = tmp_path / "digits/small_cnn/classical/seed0"
    run_dir.mkdir(parents=True)
    model = {"backbone": "small_cnn", "head": "avg-linear", "num_classes": 3, "image_size": 32}
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"model": model, "seed": 0}))
    (run_dir / "final.json").write_text(json.dumps({"accuracy": 0.5, "macro_f1": 0.4}))
    # small_cnn ends with 64 channels: GAP + Linear(64, 3) = 64·3 + 3
    assert load_run(run_dir).params_head == 195


OLD_GRID = Path(__file__).parent / "data" / "grid-84a2461"
"""Records (cell.json, config.yaml, final.json, metrics.csv) of ``qhead reproduce --datasets
digits --backbones small_cnn --heads classical,quantum --seeds 2 --epochs 2 --image-size 16``
run at commit 84a2461; ``grid-84a2461.summary.csv`` is the ``qhead report`` of that commit."""


def test_report_of_an_old_grid_is_unchanged(tmp_path):
    runs, problems = collect_runs(OLD_GRID)
    assert problems == [] and len(runs) == 4
    files = write_report(OLD_GRID, tmp_path, plots=False)
    with (OLD_GRID.parent / "grid-84a2461.summary.csv").open() as handle:
        before = list(csv.DictReader(handle))
    with files.summary_csv.open() as handle:
        after = list(csv.DictReader(handle))
    assert len(after) == len(before) == 2
    for old, new in zip(before, after, strict=True):
        assert {k: new[k] for k in old} == old  # every column the old report had


def test_runs_csv_names_run_dirs_relative_to_the_working_directory(tmp_path, monkeypatch):
    # a report of committed records must be the same file in every clone, whether the
    # records folder is given as an absolute or a relative path
    monkeypatch.chdir(OLD_GRID.parent)
    tables = []
    for root in (OLD_GRID.resolve(), Path(OLD_GRID.name)):
        files = write_report(root, tmp_path / root.name, plots=False)
        tables.append((tmp_path / root.name / "runs.csv").read_text())
        with (tmp_path / root.name / "runs.csv").open() as handle:
            dirs = [row["run_dir"] for row in csv.DictReader(handle)]
        assert all(d.startswith("grid-84a2461/") for d in dirs), dirs
    assert tables[0] == tables[1]
    assert files.summary_csv.exists()
