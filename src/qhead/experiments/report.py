"""``qhead report``: paper-style tables (Markdown + CSV) and plots from a directory of runs.

Layout follows the paper's Tables 3–4 (one table per backbone, rows = dataset × model,
columns Params*, accuracy, macro-F1), extended with what a single run per cell cannot
show: mean ± sample std over seeds (``n`` given), the seed-paired difference of every
arm to the classical model with a 95 % Student-t interval, the paper's reported numbers
beside ours, and the budget the runs were trained with.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qhead.errors import DataError
from qhead.experiments.grid import DATASET_KEY, REFERENCE_ARM, SEED_KEY, UNTRACKED_KEYS
from qhead.experiments.paper import BACKBONE_TITLES, DATASET_TITLES, PaperCell, paper_cell
from qhead.experiments.results import (
    RunResult,
    arm_order,
    arm_overrides,
    collect_runs,
    read_metrics_csv,
)
from qhead.experiments.stats import PairedDifference, Summary, paired_difference, summarize

PAPER_BUDGET = "paper: 200 epochs, 224×224, batch 32, Adam lr 1e-3, one run per cell"
METRICS = (("accuracy", "Acc"), ("macro_f1", "macro-F1"))
NOT_BUDGET = frozenset(
    {"data.num_workers", "plots", "tensorboard", "progress", "threads", "device", "out"}
)
"""Overrides that change how a run is executed or logged, not what it computes."""


@dataclass
class ArmRow:
    """Aggregate of one (dataset, backbone, arm) over its seeds."""

    dataset: str
    backbone: str
    arm: str
    runs: list[RunResult]
    accuracy: Summary
    macro_f1: Summary
    params_head: int | None
    paper: PaperCell | None
    diff_accuracy: PairedDifference | None
    diff_macro_f1: PairedDifference | None
    budget: str

    @property
    def seeds(self) -> list[int]:
        return sorted(r.seed for r in self.runs)


def budget_line(runs: Sequence[RunResult]) -> str:
    """One line naming the budget of a set of runs (all distinct values if they differ)."""
    values: dict[str, set[str]] = defaultdict(set)
    for run in runs:
        skip = set(arm_overrides(run.arm)) | {SEED_KEY, DATASET_KEY, *UNTRACKED_KEYS}
        skip |= {"model.backbone", "model.head"}  # the model, not the budget
        merged = dict(run.budget)
        merged.update(
            {k: v for k, v in run.overrides.items() if k not in skip and k not in NOT_BUDGET}
        )
        for twin_key in ("data.image_size", "model.image_size"):
            if twin_key in merged and merged.get("image_size") == merged[twin_key]:
                merged.pop(twin_key)
        for key, value in merged.items():
            if key.rsplit(".", 1)[-1] == "seed":
                continue
            values[key].add(str(value))
    if not values:
        return "budget: unknown (runs carry no config.yaml / cell.json)"
    parts = [f"{k}={'|'.join(sorted(v))}" for k, v in sorted(values.items())]
    return "budget: " + ", ".join(parts)


def aggregate(runs: Sequence[RunResult], confidence: float = 0.95) -> list[ArmRow]:
    """Groups runs by (dataset, backbone, arm) and pairs each arm with the classical one."""
    by_arm: dict[tuple[str, str, str], list[RunResult]] = defaultdict(list)
    for run in runs:
        by_arm[(run.dataset, run.backbone, run.arm)].append(run)
    for key, group in by_arm.items():
        seeds = [r.seed for r in group]
        if len(seeds) != len(set(seeds)):
            dirs = ", ".join(str(r.run_dir) for r in group)
            raise DataError(f"{'/'.join(key)}: the same seed appears twice among {dirs}")
    rows: list[ArmRow] = []
    for (dataset, backbone, arm), group in sorted(
        by_arm.items(), key=lambda kv: (kv[0][0], kv[0][1], arm_order(kv[0][2]))
    ):
        reference = by_arm.get((dataset, backbone, REFERENCE_ARM))
        diffs: dict[str, PairedDifference | None] = {"accuracy": None, "macro_f1": None}
        if reference is not None and arm != REFERENCE_ARM:
            for metric in diffs:
                diffs[metric] = paired_difference(
                    {r.seed: getattr(r, metric) for r in group},
                    {r.seed: getattr(r, metric) for r in reference},
                    confidence,
                )
        params = {r.params_head for r in group if r.params_head is not None}
        paper_arm = arm if arm in ("classical", "quantum") else ""
        rows.append(
            ArmRow(
                dataset=dataset,
                backbone=backbone,
                arm=arm,
                runs=sorted(group, key=lambda r: r.seed),
                accuracy=summarize([r.accuracy for r in group]),
                macro_f1=summarize([r.macro_f1 for r in group]),
                params_head=params.pop() if len(params) == 1 else None,
                paper=paper_cell(dataset, backbone, paper_arm) if paper_arm else None,
                diff_accuracy=diffs["accuracy"],
                diff_macro_f1=diffs["macro_f1"],
                budget=budget_line(group),
            )
        )
    return rows


def _pct(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value * 100:.2f}"


def _int(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def conclusions(rows: Sequence[ArmRow]) -> list[str]:
    """One sentence per (arm − classical, metric) comparison."""
    lines = []
    for row in rows:
        for metric, label in METRICS:
            diff = getattr(row, f"diff_{metric}")
            if diff is not None:
                title = f"{DATASET_TITLES.get(row.dataset, row.dataset)}, " + BACKBONE_TITLES.get(
                    row.backbone, row.backbone
                )
                lines.append(f"{title}: " + diff.conclusion(row.arm, REFERENCE_ARM, label))
    return lines


def markdown_tables(rows: Sequence[ArmRow], problems: Sequence[str] = ()) -> str:
    """The report as Markdown: one table per backbone, budget lines, conclusions."""
    out = ["# qhead report", ""]
    out.append(
        "Accuracy and macro-F1 on the test set in %, mean ± sample std (ddof=1) over "
        "`n` seeds. Δ = seed-paired difference to the classical model in percentage "
        "points, with its 95 % Student-t interval; an interval that excludes 0 is a "
        "significant difference. Each run contributes its last epoch's test metrics "
        "(`final.json`; no model selection on the test split). "
        "Params* = trainable parameters after the backbone. "
        f"Paper columns: as printed in the paper ({PAPER_BUDGET})."
    )
    out.append("")
    backbones = list(dict.fromkeys(r.backbone for r in rows))
    for backbone in backbones:
        sub = [r for r in rows if r.backbone == backbone]
        table = {"resnet18": "Table 3", "maxvit_t": "Table 4"}.get(backbone)
        where = f"layout of the paper's {table}" if table else "backbone not in the paper"
        out.append(f"## {BACKBONE_TITLES.get(backbone, backbone)} ({where})")
        out.append("")
        for line in sorted({f"- {DATASET_TITLES.get(r.dataset, r.dataset)} runs, {r.budget}"
                            for r in sub}):
            out.append(line)
        out.append(f"- {PAPER_BUDGET}")
        out.append("")
        out.append(
            "| Dataset | Model | Params* | n | Acc | macro-F1 | Δ Acc vs classical [95% CI] "
            "| Δ F1 vs classical [95% CI] | paper Params* | paper Acc | paper F1 |"
        )
        out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for row in sub:
            out.append(
                "| "
                + " | ".join(
                    [
                        DATASET_TITLES.get(row.dataset, row.dataset),
                        row.arm,
                        _int(row.params_head),
                        str(row.accuracy.n),
                        row.accuracy.format(),
                        row.macro_f1.format(),
                        row.diff_accuracy.format() if row.diff_accuracy else "—",
                        row.diff_macro_f1.format() if row.diff_macro_f1 else "—",
                        _int(row.paper.params) if row.paper else "—",
                        _pct(row.paper.accuracy) if row.paper else "—",
                        _pct(row.paper.macro_f1) if row.paper else "—",
                    ]
                )
                + " |"
            )
        out.append("")
    mixed = sorted({f"{r.dataset}/{r.backbone}" for r in rows if "|" in r.budget})
    if mixed:
        out.append(
            "**Warning: runs with different budgets are mixed in "
            + ", ".join(mixed)
            + "** (values separated by `|` above); report each budget's runs dir separately."
        )
        out.append("")
    lines = conclusions(rows)
    if lines:
        out.append("## Conclusions (95 %, seed-paired)")
        out.append("")
        out.extend(f"- {line}" for line in lines)
        out.append("")
    unpaired = [
        f"{r.dataset}/{r.backbone}/{r.arm}: seeds {sorted(set(r.seeds) - set(d.seeds))} "
        "have no classical run with the same seed"
        for r in rows
        for d in [r.diff_accuracy]
        if d is not None and set(r.seeds) - set(d.seeds)
    ]
    if unpaired or problems:
        out.append("## Not included")
        out.append("")
        out.extend(f"- {line}" for line in [*unpaired, *problems])
        out.append("")
    return "\n".join(out)


CSV_COLUMNS = (
    "dataset", "backbone", "arm", "n", "seeds", "params_head",
    "acc_mean", "acc_std", "f1_mean", "f1_std",
    "dacc_n", "dacc_mean", "dacc_low", "dacc_high", "dacc_significant",
    "df1_n", "df1_mean", "df1_low", "df1_high", "df1_significant",
    "paper_params", "paper_acc", "paper_f1", "budget",
)  # fmt: skip


def _num(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.6f}"


def csv_rows(rows: Sequence[ArmRow]) -> list[dict[str, Any]]:
    """The summary table as CSV rows (fractions, not percent; empty = not available)."""
    out = []
    for row in rows:
        record: dict[str, Any] = {
            "dataset": row.dataset,
            "backbone": row.backbone,
            "arm": row.arm,
            "n": row.accuracy.n,
            "seeds": " ".join(str(s) for s in row.seeds),
            "params_head": "" if row.params_head is None else row.params_head,
            "acc_mean": _num(row.accuracy.mean),
            "acc_std": _num(row.accuracy.std),
            "f1_mean": _num(row.macro_f1.mean),
            "f1_std": _num(row.macro_f1.std),
            "paper_params": row.paper.params if row.paper else "",
            "paper_acc": _num(row.paper.accuracy) if row.paper else "",
            "paper_f1": _num(row.paper.macro_f1) if row.paper else "",
            "budget": row.budget,
        }
        for prefix, diff in (("dacc", row.diff_accuracy), ("df1", row.diff_macro_f1)):
            record[f"{prefix}_n"] = diff.n if diff else ""
            record[f"{prefix}_mean"] = _num(diff.mean) if diff else ""
            record[f"{prefix}_low"] = _num(diff.low) if diff else ""
            record[f"{prefix}_high"] = _num(diff.high) if diff else ""
            record[f"{prefix}_significant"] = (
                "" if diff is None or not diff.has_interval else str(diff.significant).lower()
            )
        out.append(record)
    return out


def _write_csv(path: Path, columns: Sequence[str], records: Sequence[dict[str, Any]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(records)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_scores(rows: Sequence[ArmRow], path: Path) -> None:
    """Accuracy and macro-F1 per arm: mean ± std bars, one dot per seed, paper as ×."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(max(6, 1.6 * len(rows) + 2), 3.8), squeeze=False)
    names = [r.arm for r in rows]
    for ax, (metric, label) in zip(axes[0], METRICS, strict=True):
        for i, row in enumerate(rows):
            summary: Summary = getattr(row, metric)
            values = [getattr(r, metric) * 100 for r in row.runs]
            ax.bar(i, summary.mean * 100, color="C0" if row.arm != "quantum" else "C1", alpha=0.35)
            if summary.n > 1:
                ax.errorbar(i, summary.mean * 100, yerr=summary.std * 100, color="k", capsize=4)
            offsets = [(j - (len(values) - 1) / 2) * 0.08 for j in range(len(values))]
            ax.scatter([i + o for o in offsets], values, color="k", s=14, zorder=3)
            if row.paper is not None:
                ax.scatter(
                    [i], [getattr(row.paper, metric) * 100], marker="x", color="red", s=60,
                    zorder=4,
                )
        ax.set_xticks(range(len(names)), names, rotation=20)
        ax.set_ylabel(f"{label} (%)")
        ax.grid(axis="y", alpha=0.3)
    row0 = rows[0]
    fig.suptitle(
        f"{DATASET_TITLES.get(row0.dataset, row0.dataset)} / "
        f"{BACKBONE_TITLES.get(row0.backbone, row0.backbone)}: dots = seeds, "
        "bar = mean ± std, × = paper",
        fontsize=9,
    )
    fig.text(0.01, 0.01, row0.budget, fontsize=7)
    fig.tight_layout(rect=(0, 0.04, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)


CURVE_COLUMNS = ("train_loss", "test_loss", "test_acc", "test_macro_f1")
"""metrics.csv columns plotted as learning curves (the engine's names), in this order."""


def _curve_columns(columns: dict[str, list[float]]) -> list[str]:
    wanted = [c for c in CURVE_COLUMNS if c in columns]
    if not wanted:  # another writer's names: anything that looks like a loss or a score
        wanted = [c for c in columns if c != "epoch" and ("loss" in c or "acc" in c or "f1" in c)]
    return wanted[:4]


def plot_curves(rows: Sequence[ArmRow], path: Path) -> bool:
    """Learning curves from each run's ``metrics.csv``, one colour per arm.

    Returns:
        False (and writes nothing) if no run has a usable ``metrics.csv``.
    """
    curves = {
        (row.arm, run.seed): read_metrics_csv(run.run_dir) for row in rows for run in row.runs
    }
    columns: list[str] = []
    for data in curves.values():
        for name in _curve_columns(data):
            if name not in columns:
                columns.append(name)
    columns = columns[:4]
    if not columns:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(columns), figsize=(4 * len(columns), 3.4), squeeze=False)
    colours = {row.arm: f"C{i}" for i, row in enumerate(rows)}
    for ax, name in zip(axes[0], columns, strict=True):
        labelled: set[str] = set()
        for (arm, _seed), data in curves.items():
            if name not in data:
                continue
            xs = data.get("epoch", list(range(1, len(data[name]) + 1)))
            ax.plot(xs, data[name], color=colours[arm], alpha=0.7, lw=1,
                    label=arm if arm not in labelled else None)
            labelled.add(arm)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_confusions(rows: Sequence[ArmRow], path: Path) -> bool:
    """Confusion matrices summed over seeds, one panel per arm (rows true, cols predicted).

    Returns:
        False (and writes nothing) if no run recorded a confusion matrix.
    """
    panels = []
    for row in rows:
        matrices = [r.confusion for r in row.runs if r.confusion]
        if not matrices:
            continue
        size = len(matrices[0])
        total = [[0] * size for _ in range(size)]
        for m in matrices:
            if len(m) != size:
                continue
            for i in range(size):
                for j in range(size):
                    total[i][j] += m[i][j]
        classes = next((r.classes for r in row.runs if r.classes), None)
        panels.append((row.arm, total, classes, len(matrices)))
    if not panels:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.4), squeeze=False)
    for ax, (arm, total, classes, count) in zip(axes[0], panels, strict=True):
        ax.imshow(total, cmap="Blues")
        size = len(total)
        peak = max(max(row) for row in total) or 1
        for i in range(size):
            for j in range(size):
                colour = "white" if total[i][j] > 0.6 * peak else "black"
                ax.text(j, i, str(total[i][j]), ha="center", va="center", fontsize=8,
                        color=colour)
        ticks = classes if classes and len(classes) == size else [str(i) for i in range(size)]
        ax.set_xticks(range(size), ticks, rotation=45, fontsize=7)
        ax.set_yticks(range(size), ticks, fontsize=7)
        ax.set_title(f"{arm} (sum over {count} seed{'s' if count > 1 else ''})", fontsize=9)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


@dataclass
class ReportFiles:
    """Paths written by :func:`write_report`."""

    markdown: Path
    summary_csv: Path
    runs_csv: Path
    plots: list[Path]


def write_report(runs_dir: Path | str, out: Path | str | None = None,
                 confidence: float = 0.95, plots: bool = True) -> ReportFiles:
    """Reads every finished run under ``runs_dir`` and writes the report files.

    Writes ``report.md``, ``summary.csv`` (one row per dataset × backbone × arm),
    ``runs.csv`` (one row per run) and, with ``plots``, ``scores_<d>_<b>.png``,
    ``curves_<d>_<b>.png`` and ``confusion_<d>_<b>.png`` into ``out`` (default:
    ``<runs_dir>/report``).

    Raises:
        DataError: if ``runs_dir`` holds no finished run.
    """
    runs_dir = Path(runs_dir)
    out_dir = Path(out) if out is not None else runs_dir / "report"
    runs, problems = collect_runs(runs_dir)
    if not runs:
        detail = f" ({len(problems)} unfinished/unreadable: {problems[0]} ...)" if problems else ""
        raise DataError(f"{runs_dir}: no finished run (no readable final.json){detail}")
    rows = aggregate(runs, confidence)
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = out_dir / "report.md"
    markdown.write_text(markdown_tables(rows, problems))
    summary = out_dir / "summary.csv"
    _write_csv(summary, CSV_COLUMNS, csv_rows(rows))
    runs_csv = out_dir / "runs.csv"
    _write_csv(
        runs_csv,
        ("dataset", "backbone", "arm", "seed", "accuracy", "macro_f1", "params_head", "run_dir"),
        [
            {
                "dataset": r.dataset, "backbone": r.backbone, "arm": r.arm, "seed": r.seed,
                "accuracy": _num(r.accuracy), "macro_f1": _num(r.macro_f1),
                "params_head": "" if r.params_head is None else r.params_head,
                "run_dir": str(r.run_dir),
            }
            for r in runs
        ],
    )
    written: list[Path] = []
    if plots:
        groups: dict[tuple[str, str], list[ArmRow]] = defaultdict(list)
        for row in rows:
            groups[(row.dataset, row.backbone)].append(row)
        for (dataset, backbone), group in groups.items():
            stem = f"{dataset}_{backbone}"
            path = out_dir / f"scores_{stem}.png"
            plot_scores(group, path)
            written.append(path)
            path = out_dir / f"curves_{stem}.png"
            if plot_curves(group, path):
                written.append(path)
            path = out_dir / f"confusion_{stem}.png"
            if plot_confusions(group, path):
                written.append(path)
    return ReportFiles(markdown, summary, runs_csv, written)
