"""Results that outlive a machine: merging runs dirs, exporting records, reporting from them;
splits in the cell identity and the report; the optimistic best-epoch column."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import yaml

from qhead.cli import main
from qhead.engine.record import RECORD_FILES, write_metrics_row
from qhead.errors import ConfigError, DataError
from qhead.experiments.grid import GridSpec, cell_fingerprint, cell_record, cell_status
from qhead.experiments.records import export_records
from qhead.experiments.report import write_report
from qhead.experiments.results import collect_runs

OLD_GRID = Path(__file__).parent / "data" / "grid-84a2461"

# per (split, arm, seed): test accuracy per epoch (the last one is the reported number)
CURVES = {
    ("paper", "classical", 0): [0.60, 0.80, 0.70],
    ("paper", "classical", 1): [0.62, 0.72, 0.72],
    ("paper", "classical", 2): [0.64, 0.70, 0.74],
    ("paper", "quantum", 0): [0.70, 0.90, 0.71],
    ("paper", "quantum", 1): [0.66, 0.74, 0.74],
    ("paper", "quantum", 2): [0.68, 0.79, 0.77],
    ("grouped", "classical", 0): [0.50, 0.60, 0.55],
    ("grouped", "classical", 1): [0.52, 0.58, 0.58],
    ("grouped", "quantum", 0): [0.50, 0.61, 0.53],
    ("grouped", "quantum", 1): [0.49, 0.54, 0.54],
}


def _make_run(root: Path, split: str, arm: str, seed: int, accs, epochs: int = 3) -> Path:
    grid = GridSpec(["busi"], ["resnet18"], [arm], [seed], {"epochs": epochs}, splits=[split])
    cell = grid.cells()[0]
    overrides = grid.cell_overrides(cell)
    run_dir = cell.run_dir(root)
    (run_dir).mkdir(parents=True, exist_ok=True)
    (run_dir / "cell.json").write_text(json.dumps(cell_record(cell, overrides)))
    data = {"name": "busi", "image_size": 64, "root": str(root / "data")}
    if split != "paper":
        data["split"] = split
    config = {"epochs": epochs, "batch_size": 32, "lr": 0.001, "seed": seed, "data": data,
              "model": {"backbone": "resnet18", "head": arm, "image_size": 64},
              "out": str(run_dir), "threads": 2}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    for epoch, acc in enumerate(accs, start=1):
        write_metrics_row(run_dir / "metrics.csv",
                          {"epoch": epoch, "train_loss": 1.0 / epoch, "test_acc": acc,
                           "test_loss": 1.0, "test_macro_f1": acc - 0.05})
    final = {"accuracy": accs[-1], "macro_f1": accs[-1] - 0.05,
             "params_after_backbone": {"classical": 1539, "quantum": 63}[arm],
             "confusion_matrix": [[5, 1, 0], [1, 3, 1], [0, 0, 4]],
             "classes": ["benign", "malignant", "normal"], "torch": "2.14.1"}
    (run_dir / "final.json").write_text(json.dumps(final))
    return run_dir


def _make_grid(root: Path, curves=CURVES) -> None:
    for (split, arm, seed), accs in curves.items():
        _make_run(root, split, arm, seed, accs)


def _summary(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with path.open() as handle:
        return {(r["split"], r["arm"]): r for r in csv.DictReader(handle)}


def test_split_names_the_run_dir_and_keeps_paper_split_paths_and_fingerprints(tmp_path):
    grid = GridSpec(["busi"], ["resnet18"], ["classical"], [0], {"epochs": 5},
                    splits=["paper", "grouped"])
    paper, grouped = grid.cells()
    assert paper.run_dir(tmp_path) == tmp_path / "busi/resnet18/classical/seed0"
    assert grouped.run_dir(tmp_path) == tmp_path / "busi-grouped/resnet18/classical/seed0"
    assert "data.split" not in grid.cell_overrides(paper)
    assert grid.cell_overrides(grouped)["data.split"] == "grouped"
    assert cell_record(grouped, grid.cell_overrides(grouped))["split"] == "grouped"
    # a data.split override is the grid's split (so that it names the run dir)
    assert GridSpec(["busi"], ["resnet18"], ["classical"], [0],
                    {"data.split": "grouped"}).cells() == [grouped]
    with pytest.raises(ConfigError, match="unknown split 'groupd'; allowed: paper, grouped"):
        GridSpec(["busi"], ["resnet18"], ["classical"], [0], splits=["groupd"])
    with pytest.raises(ConfigError, match="name the splits once"):
        GridSpec(["busi"], ["resnet18"], ["classical"], [0], {"data.split": "grouped"},
                 splits=["paper", "grouped"])


def test_run_dirs_of_an_old_grid_are_still_finished_cells():
    grid = GridSpec(["digits"], ["small_cnn"], ["classical", "quantum"], [0, 1],
                    {"epochs": 2, "image_size": 16})
    for cell in grid.cells():
        run_dir = cell.run_dir(OLD_GRID)
        recorded = json.loads((run_dir / "cell.json").read_text())
        assert cell_fingerprint(cell, grid.cell_overrides(cell)) == recorded["fingerprint"]
        assert cell_status(run_dir, cell, grid.cell_overrides(cell)).state == "done"


def test_reproduce_dry_run_with_the_grouped_split(tmp_path, capsys):
    assert main(["reproduce", "--heads", "classical,quantum", "--seeds", "1", "--epochs", "5",
                 "--splits", "paper,grouped", "--out", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "start    busi/resnet18/quantum/seed0" in out
    assert "start    busi-grouped/resnet18/quantum/seed0" in out
    assert "4 cell(s): 4 start" in out


def test_report_names_splits_and_puts_them_side_by_side(tmp_path):
    _make_grid(tmp_path / "runs")
    files = write_report(tmp_path / "runs", tmp_path / "out")
    rows = _summary(files.summary_csv)
    assert set(rows) == {("paper", "classical"), ("paper", "quantum"),
                         ("grouped", "classical"), ("grouped", "quantum")}
    # differences are paired within a split: grouped quantum − classical = -2, -4 pp
    assert float(rows[("grouped", "quantum")]["dacc_mean"]) == pytest.approx(-0.03)
    assert float(rows[("paper", "quantum")]["dacc_mean"]) == pytest.approx(0.02)
    # the paper's numbers belong to its own split only
    assert rows[("paper", "quantum")]["paper_acc"] == "0.860800"
    assert rows[("grouped", "quantum")]["paper_acc"] == ""
    md = files.markdown.read_text()
    assert "## ResNet-18, paper split (layout of the paper's Table 3)" in md
    assert "## ResNet-18, grouped split (layout of the paper's Table 3)" in md
    assert "- BUSI runs (grouped split), budget: " in md and "epochs=3" in md
    assert "## BUSI, ResNet-18: paper split vs grouped split" in md
    side = md.split("paper split vs grouped split", 1)[1]
    assert "| quantum | 3 / 2 | 74.00 ± 3.00 | 53.50 ± 0.71 |" in side
    assert "| Δ quantum − classical | 3 / 2 | +2.00 [-0.48, +4.48] | -3.00 [-15.71, +9.71] |" \
        in side
    assert "BUSI (grouped split), ResNet-18: Acc: quantum vs classical" in md
    names = sorted(p.name for p in files.plots)
    assert "curves_busi-grouped_resnet18.png" in names and "curves_busi_resnet18.png" in names


def test_best_epoch_accuracy_is_the_optimistic_column(tmp_path):
    _make_grid(tmp_path / "runs")
    files = write_report(tmp_path / "runs", tmp_path / "out", plots=False)
    rows = _summary(files.summary_csv)
    q = rows[("paper", "quantum")]
    # per-seed maxima over epochs 0.90, 0.74, 0.79 (the last epochs: 0.71, 0.74, 0.77)
    assert float(q["best_acc_mean"]) == pytest.approx(0.81)
    assert float(q["best_acc_std"]) == pytest.approx(0.0818535, abs=1e-6)
    assert float(q["acc_mean"]) == pytest.approx(0.74)
    md = files.markdown.read_text()
    assert "best-epoch Acc (optimistic)" in md and "selected on the test split" in md
    assert "| BUSI | quantum | 63 | 3 | 74.00 ± 3.00 | 69.00 ± 3.00 | 81.00 ± 8.19 |" in md
    with files.runs_csv.open() as handle:
        runs = {(r["split"], r["arm"], r["seed"]): r for r in csv.DictReader(handle)}
    assert runs[("paper", "quantum", "0")]["best_epoch"] == "2"


def test_report_merges_shards_and_refuses_conflicting_cells(tmp_path):
    _make_grid(tmp_path / "all")
    for (split, arm, seed), accs in CURVES.items():
        _make_run(tmp_path / f"shard{seed % 2}", split, arm, seed, accs)
    whole = write_report(tmp_path / "all", tmp_path / "r_all", plots=False)
    merged = write_report([tmp_path / "shard0", tmp_path / "shard1"], tmp_path / "r_merged",
                          plots=False)
    assert merged.summary_csv.read_text() == whole.summary_csv.read_text()
    assert merged.markdown.read_text() == whole.markdown.read_text()
    # the same run in two dirs (a copy, another "out" and thread count) counts once
    runs, _ = collect_runs([tmp_path / "all", tmp_path / "shard0"])
    assert len(runs) == len(CURVES)
    # the same cell with another budget is refused, naming the cell and the difference
    _make_run(tmp_path / "other", "paper", "quantum", 1, [0.5, 0.6, 0.7, 0.8], epochs=4)
    with pytest.raises(DataError, match=r"cell busi/resnet18/quantum/seed1 conflicts .*epochs"):
        write_report([tmp_path / "all", tmp_path / "other"], tmp_path / "r_bad")
    # same config, other results: the cell was trained twice
    _make_run(tmp_path / "twice", "paper", "quantum", 1, [0.5, 0.6, 0.9])
    with pytest.raises(DataError, match="trained twice"):
        collect_runs([tmp_path / "all", tmp_path / "twice"])


def test_export_records_then_report_from_them_alone(tmp_path, capsys):
    runs = tmp_path / "runs"
    shutil.copytree(OLD_GRID, runs)
    for run_dir in runs.glob("*/*/*/seed*"):  # what a real run dir also holds
        for name in ("last.pt", "best.pt", "curves.png"):
            (run_dir / name).write_bytes(b"\0" * 4096)
        (run_dir / "tb").mkdir()
        (run_dir / "train.log").write_text("epoch 1/2 ...\n")
    unfinished = runs / "digits/small_cnn/twin/seed0"
    unfinished.mkdir(parents=True)
    (unfinished / "config.yaml").write_text("seed: 0\n")
    before = write_report(runs, tmp_path / "report_before")

    records = tmp_path / "results" / "digits-small"
    assert main(["export-records", str(runs), "--out", str(records)]) == 0
    out = capsys.readouterr().out
    assert "4 exported, 0 unchanged, 1 skipped, 0 conflict(s)" in out
    assert "twin/seed0: unfinished" in out
    exported = sorted(p.relative_to(records).as_posix() for p in records.rglob("*"))
    assert {Path(p).name for p in exported if "." in Path(p).name} == set(RECORD_FILES)
    assert not any(p.endswith((".pt", ".png", ".log", ".tmp")) for p in exported)
    total = sum(p.stat().st_size for p in records.rglob("*") if p.is_file())
    assert total < 64 * 1024  # a few KiB per run

    shutil.rmtree(runs)  # the machine is gone: only the records remain
    after = write_report(records, tmp_path / "report_after")
    assert after.summary_csv.read_text() == before.summary_csv.read_text()
    text_before = before.markdown.read_text()
    assert "## Not included" in text_before  # the unfinished run, not exported
    assert after.markdown.read_text().rstrip() == text_before.split("## Not included")[0].rstrip()
    assert sorted(p.name for p in after.plots) == sorted(p.name for p in before.plots)
    for old, new in zip(sorted(before.plots), sorted(after.plots), strict=True):
        assert new.read_bytes() == old.read_bytes(), new.name  # the same plots, exactly

    # idempotent: exporting the records again changes nothing
    stamps = {p: p.stat().st_mtime_ns for p in records.rglob("*") if p.is_file()}
    outcome = export_records([records], records)
    assert len(outcome.unchanged) == 4 and not outcome.copied and not outcome.conflicts
    assert {p: p.stat().st_mtime_ns for p in records.rglob("*") if p.is_file()} == stamps


def test_export_refuses_another_run_of_an_exported_cell(tmp_path):
    _make_grid(tmp_path / "a", {("paper", "quantum", 0): [0.5, 0.6, 0.7]})
    _make_grid(tmp_path / "b", {("paper", "quantum", 0): [0.5, 0.6, 0.8]})
    records = tmp_path / "records"
    assert len(export_records([tmp_path / "a"], records).copied) == 1
    outcome = export_records([tmp_path / "b"], records)
    assert len(outcome.conflicts) == 1 and "trained twice" in outcome.conflicts[0]
    assert json.loads((records / "busi/resnet18/quantum/seed0/final.json").read_text())[
        "accuracy"] == 0.7
    outcome = export_records([tmp_path / "b"], records, overwrite=True)
    assert len(outcome.copied) == 1
    assert json.loads((records / "busi/resnet18/quantum/seed0/final.json").read_text())[
        "accuracy"] == 0.8


def test_reproduce_skips_cells_finished_in_exported_records(tmp_path, capsys):
    runs = tmp_path / "machine-a"
    _make_run(runs, "paper", "classical", 0, [0.6, 0.7, 0.8])
    _make_run(runs, "paper", "classical", 1, [0.6, 0.7, 0.8], epochs=4)  # another budget
    records = tmp_path / "results"
    export_records([runs], records)
    args = ["reproduce", "--heads", "classical", "--seeds", "3", "--epochs", "3",
            "--data-root", f"busi={tmp_path / 'data'}", "--out", str(tmp_path / "machine-b"),
            "--dry-run"]
    assert main([*args, "--done", str(records)]) == 0
    lines = capsys.readouterr().out.splitlines()
    actions = {line.split()[1]: line.split()[0] for line in lines
               if line.startswith(("skip", "start"))}
    # seed 0 is finished in the records with this budget; seed 1 only with epochs=4
    assert actions == {"busi/resnet18/classical/seed0": "skip",
                       "busi/resnet18/classical/seed1": "start",
                       "busi/resnet18/classical/seed2": "start"}
    assert main([*args]) == 0
    assert "3 start" in capsys.readouterr().out
    assert main([*args, "--done", str(tmp_path / "missing")]) == 1
    assert "--done" in capsys.readouterr().err


REPO = Path(__file__).resolve().parents[2]
BUSI_224 = "results/busi-resnet18-224"


def test_committed_busi_records_reproduce_the_committed_report_and_docs(tmp_path, monkeypatch):
    # docs/results.md publishes the 224-px grid from these records; the report rebuilt from
    # them alone (no checkpoints) must be the committed one, and the docs must quote it
    monkeypatch.chdir(REPO)  # runs.csv names the run dirs relative to the working directory
    committed = REPO / BUSI_224 / "report"
    files = write_report(BUSI_224, tmp_path, plots=False)
    for name in ("report.md", "summary.csv", "runs.csv"):
        assert (tmp_path / name).read_text() == (committed / name).read_text(), name
    body = files.markdown.read_text().split("\n## ", 1)[1].replace("\n## ", "\n#### ")
    assert "#### " + body.rstrip() in (REPO / "docs/results.md").read_text()
    assert not list((REPO / BUSI_224).rglob("*.pt"))  # records only
