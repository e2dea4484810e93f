"""``qhead report``: paper-style tables (Markdown + CSV) and plots from a directory of runs.

Layout follows the paper's Tables 3–4 (one table per backbone and split, rows = dataset ×
model, columns Params*, accuracy, macro-F1), extended with what a single run per cell
cannot show: mean ± sample std over seeds (``n`` given), the best test accuracy over
epochs beside the last-epoch one (labelled optimistic: it is selected on the test split),
the seed-paired difference of every arm to the classical model with a 95 % Student-t
interval, the paper's reported numbers beside ours, and the budget the runs were trained
with. When a dataset was run on more than one split (the paper's and the grouped,
leakage-free one), a second table puts the splits side by side, with quantum − classical
on each. The controls (every arm other than the two the paper compares) are also paired
against the quantum model, since that is the question they exist for.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qhead.engine import record as run_record
from qhead.errors import DataError
from qhead.experiments.grid import (
    DATASET_KEY,
    DEFAULT_SPLIT,
    REFERENCE_ARM,
    SEED_KEY,
    SPLIT_KEY,
    UNTRACKED_KEYS,
)
from qhead.experiments.paper import BACKBONE_TITLES, DATASET_TITLES, PaperCell, paper_cell
from qhead.experiments.results import (
    RunResult,
    arm_order,
    arm_overrides,
    collect_runs,
)
from qhead.experiments.stats import PairedDifference, Summary, paired_difference, summarize

QUANTUM_ARM = "quantum"
PAPER_BUDGET = "paper: 200 epochs, 224×224, batch 32, Adam lr 1e-3, one run per cell"
METRICS = (("accuracy", "Acc"), ("macro_f1", "macro-F1"))
NOT_BUDGET = frozenset(
    {"data.num_workers", "plots", "tensorboard", "progress", "threads", "device", "out",
     SPLIT_KEY}
)
"""Overrides not printed in the budget line: how a run is executed or logged (as in every
earlier report, so their budget lines stay the same), and the split, which every table
names in its heading."""
OPTIMISTIC = (
    "best-epoch Acc = the highest test accuracy over the epochs (`metrics.csv`), i.e. the "
    "model selected on the test split: what a paper that selects on its test split would "
    "print; optimistic, not a result"
)


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
    split: str = DEFAULT_SPLIT
    best_accuracy: Summary | None = None

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


def split_title(dataset: str, split: str) -> str:
    """How a table names a run's split: ``paper split`` for the paper's datasets, ``default
    split`` for the others (their own seeded split), else the split's name."""
    if split == DEFAULT_SPLIT:
        return "paper split" if dataset in DATASET_TITLES else "default split"
    return f"{split} split"


def aggregate(runs: Sequence[RunResult], confidence: float = 0.95) -> list[ArmRow]:
    """Groups runs by (dataset, split, backbone, arm) and pairs each arm with the classical
    one of the same dataset, split and backbone."""
    by_arm: dict[tuple[str, str, str, str], list[RunResult]] = defaultdict(list)
    for run in runs:
        by_arm[(run.dataset, run.backbone, run.arm, run.split)].append(run)
    for key, group in by_arm.items():
        seeds = [r.seed for r in group]
        if len(seeds) != len(set(seeds)):
            dirs = ", ".join(str(r.run_dir) for r in group)
            raise DataError(f"{'/'.join(key)}: the same seed appears twice among {dirs}")
    rows: list[ArmRow] = []
    for (dataset, backbone, arm, split), group in sorted(
        by_arm.items(),
        key=lambda kv: (kv[0][0], kv[0][3] != DEFAULT_SPLIT, kv[0][3], kv[0][1],
                        arm_order(kv[0][2])),
    ):
        reference = by_arm.get((dataset, backbone, REFERENCE_ARM, split))
        diffs: dict[str, PairedDifference | None] = {"accuracy": None, "macro_f1": None}
        if reference is not None and arm != REFERENCE_ARM:
            for metric in diffs:
                diffs[metric] = paired_difference(
                    {r.seed: getattr(r, metric) for r in group},
                    {r.seed: getattr(r, metric) for r in reference},
                    confidence,
                )
        params = {r.params_head for r in group if r.params_head is not None}
        # the paper's numbers are of its own split only
        paper_arm = arm if arm in ("classical", "quantum") and split == DEFAULT_SPLIT else ""
        best = [r.best_accuracy for r in group if r.best_accuracy is not None]
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
                split=split,
                best_accuracy=summarize(best) if best else None,
            )
        )
    return rows


@dataclass
class ControlRow:
    """A control arm, seed-paired against the quantum arm of its dataset, split and
    backbone (Δ = control − quantum)."""

    row: ArmRow
    diff_accuracy: PairedDifference
    diff_macro_f1: PairedDifference


def control_differences(rows: Sequence[ArmRow], confidence: float = 0.95) -> list[ControlRow]:
    """Every arm other than classical and quantum against the quantum arm of the same
    dataset, split and backbone: does a model without the circuit (the twin, whose model
    class contains Ansatz 1's) or without pooling do as well as the quantum head?"""
    quantum = {(r.dataset, r.backbone, r.split): r for r in rows if r.arm == QUANTUM_ARM}
    controls = []
    for row in rows:
        reference = quantum.get((row.dataset, row.backbone, row.split))
        if reference is None or row.arm in (REFERENCE_ARM, QUANTUM_ARM):
            continue
        diffs = [
            paired_difference(
                {r.seed: getattr(r, metric) for r in row.runs},
                {r.seed: getattr(r, metric) for r in reference.runs},
                confidence,
            )
            for metric, _ in METRICS
        ]
        controls.append(ControlRow(row, *diffs))
    return controls


def _controls_table(controls: Sequence[ControlRow]) -> list[str]:
    if not controls:
        return []
    level = f"{controls[0].diff_accuracy.confidence:.0%}"
    out = [
        "## Controls against the quantum model (seed-paired)",
        "",
        f"- Δ = control − quantum on the same seeds, in percentage points, with its {level} "
        "Student-t interval (last-epoch test metrics)",
        "",
        f"| Dataset | Split | Backbone | Model | Params* | n | Δ Acc vs quantum [{level} CI] "
        f"| Δ F1 vs quantum [{level} CI] |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for c in controls:
        row = c.row
        out.append(
            f"| {DATASET_TITLES.get(row.dataset, row.dataset)} "
            f"| {split_title(row.dataset, row.split)} "
            f"| {BACKBONE_TITLES.get(row.backbone, row.backbone)} | {row.arm} "
            f"| {_int(row.params_head)} | {c.diff_accuracy.n} | {_diff(c.diff_accuracy)} "
            f"| {_diff(c.diff_macro_f1)} |"
        )
    out.append("")
    return out


def _pct(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value * 100:.2f}"


def _int(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def _where(row: ArmRow, splits_named: bool) -> str:
    title = f"{DATASET_TITLES.get(row.dataset, row.dataset)}"
    if splits_named:
        title += f" ({split_title(row.dataset, row.split)})"
    return title + ", " + BACKBONE_TITLES.get(row.backbone, row.backbone)


def conclusions(rows: Sequence[ArmRow], controls: Sequence[ControlRow] = ()) -> list[str]:
    """One sentence per (arm − classical, metric) comparison, then one per
    (control − quantum, metric)."""
    splits_named = any(r.split != DEFAULT_SPLIT for r in rows)
    lines = []
    for row in rows:
        for metric, label in METRICS:
            diff = getattr(row, f"diff_{metric}")
            if diff is not None:
                lines.append(f"{_where(row, splits_named)}: "
                             + diff.conclusion(row.arm, REFERENCE_ARM, label))
    for control in controls:
        for diff, (_, label) in zip(
            (control.diff_accuracy, control.diff_macro_f1), METRICS, strict=True
        ):
            lines.append(f"{_where(control.row, splits_named)}: "
                         + diff.conclusion(control.row.arm, QUANTUM_ARM, label))
    return lines


def _diff(diff: PairedDifference | None) -> str:
    return diff.format() if diff else "—"


def _main_table(sub: Sequence[ArmRow], backbone: str, split: str) -> list[str]:
    table = {"resnet18": "Table 3", "maxvit_t": "Table 4"}.get(backbone)
    where = f"layout of the paper's {table}" if table else "backbone not in the paper"
    splits = sorted({split_title(r.dataset, r.split) for r in sub})
    out = [f"## {BACKBONE_TITLES.get(backbone, backbone)}, {' / '.join(splits)} ({where})", ""]
    for line in sorted({f"- {DATASET_TITLES.get(r.dataset, r.dataset)} runs "
                        f"({split_title(r.dataset, r.split)}), {r.budget}" for r in sub}):
        out.append(line)
    if split == DEFAULT_SPLIT:
        out.append(f"- {PAPER_BUDGET}")
    else:
        out.append("- paper columns: none (the paper reports its own split only)")
    out.append("")
    out.append(
        "| Dataset | Model | Params* | n | Acc | macro-F1 | best-epoch Acc (optimistic) "
        "| Δ Acc vs classical [95% CI] | Δ F1 vs classical [95% CI] | paper Params* "
        "| paper Acc | paper F1 |"
    )
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in sub:
        cells = [
            DATASET_TITLES.get(row.dataset, row.dataset),
            row.arm,
            _int(row.params_head),
            str(row.accuracy.n),
            row.accuracy.format(),
            row.macro_f1.format(),
            _best(row),
            _diff(row.diff_accuracy),
            _diff(row.diff_macro_f1),
            _int(row.paper.params) if row.paper else "—",
            _pct(row.paper.accuracy) if row.paper else "—",
            _pct(row.paper.macro_f1) if row.paper else "—",
        ]
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    return out


def _best(row: ArmRow) -> str:
    best = row.best_accuracy
    if best is None:
        return "—"
    # fewer runs than the row means some runs have no metrics.csv
    return best.format() + ("" if best.n == row.accuracy.n else f" (n={best.n})")


def split_comparison(rows: Sequence[ArmRow]) -> list[str]:
    """Markdown: for each (dataset, backbone) run on several splits, the splits side by
    side (absolute numbers, then every arm − classical difference on each split)."""
    groups: dict[tuple[str, str], list[ArmRow]] = defaultdict(list)
    for row in rows:
        groups[(row.dataset, row.backbone)].append(row)
    out: list[str] = []
    for (dataset, backbone), group in groups.items():
        splits = list(dict.fromkeys(r.split for r in group))
        if len(splits) < 2:
            continue
        names = [split_title(dataset, s) for s in splits]
        by = {(r.arm, r.split): r for r in group}
        arms = [a for a in dict.fromkeys(r.arm for r in group)
                if all((a, s) in by for s in splits)]
        title = (f"{DATASET_TITLES.get(dataset, dataset)}, "
                 f"{BACKBONE_TITLES.get(backbone, backbone)}: " + " vs ".join(names))
        out += [f"## {title}", ""]
        for split, name in zip(splits, names, strict=True):
            budgets = sorted({r.budget for r in group if r.split == split})
            out.append(f"- {name}, " + "; ".join(budgets))
        out += [
            "- does removing leakage change the numbers, and quantum − classical? "
            "Last-epoch test metrics in %, mean ± std over seeds; Δ rows: seed-paired "
            "difference to classical with its 95 % CI",
            "",
        ]
        header = ["Model", "n"]
        for metric in ("Acc", "macro-F1", "best-epoch Acc (optimistic)"):
            header += [f"{metric}, {name}" for name in names]
        out.append("| " + " | ".join(header) + " |")
        out.append("|---|---:|" + "---:|" * (len(header) - 2))
        for arm in arms:
            cells = [arm, " / ".join(str(by[(arm, s)].accuracy.n) for s in splits)]
            cells += [by[(arm, s)].accuracy.format() for s in splits]
            cells += [by[(arm, s)].macro_f1.format() for s in splits]
            cells += [_best(by[(arm, s)]) for s in splits]
            out.append("| " + " | ".join(cells) + " |")
        for arm in arms:
            if arm == REFERENCE_ARM or not all(by[(arm, s)].diff_accuracy for s in splits):
                continue
            cells = [f"Δ {arm} − {REFERENCE_ARM}",
                     " / ".join(str(by[(arm, s)].diff_accuracy.n) for s in splits)]  # type: ignore[union-attr]
            cells += [_diff(by[(arm, s)].diff_accuracy) for s in splits]
            cells += [_diff(by[(arm, s)].diff_macro_f1) for s in splits]
            cells += ["" for _ in splits]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return out


def markdown_tables(rows: Sequence[ArmRow], problems: Sequence[str] = (),
                    confidence: float = 0.95) -> str:
    """The report as Markdown: one table per backbone and split, budget lines, the splits
    side by side, the controls against the quantum model, conclusions."""
    out = ["# qhead report", ""]
    out.append(
        "Accuracy and macro-F1 on the test set in %, mean ± sample std (ddof=1) over "
        "`n` seeds. Δ = seed-paired difference to the classical model in percentage "
        "points, with its 95 % Student-t interval; an interval that excludes 0 is a "
        "significant difference. Each run contributes its last epoch's test metrics "
        "(`final.json`; no model selection on the test split). "
        f"{OPTIMISTIC}. "
        "Params* = trainable parameters after the backbone. "
        f"Paper columns: as printed in the paper ({PAPER_BUDGET})."
    )
    out.append("")
    tables = list(dict.fromkeys((r.backbone, r.split) for r in rows))
    for backbone, split in tables:
        sub = [r for r in rows if r.backbone == backbone and r.split == split]
        out += _main_table(sub, backbone, split)
    out += split_comparison(rows)
    controls = control_differences(rows, confidence)
    out += _controls_table(controls)
    mixed = sorted({f"{r.dataset}/{r.backbone}" for r in rows if "|" in r.budget})
    if mixed:
        out.append(
            "**Warning: runs with different budgets are mixed in "
            + ", ".join(mixed)
            + "** (values separated by `|` above); report each budget's runs dir separately."
        )
        out.append("")
    lines = conclusions(rows, controls)
    if lines:
        out.append("## Conclusions (95 %, seed-paired)")
        out.append("")
        out.extend(f"- {line}" for line in lines)
        out.append("")
    unpaired = [
        f"{r.dataset}/{r.backbone}/{r.arm}"
        + (f" ({split_title(r.dataset, r.split)})" if r.split != DEFAULT_SPLIT else "")
        + f": seeds {sorted(set(r.seeds) - set(d.seeds))} "
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
    "split", "best_acc_n", "best_acc_mean", "best_acc_std",
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
            "split": row.split,
            "best_acc_n": row.best_accuracy.n if row.best_accuracy else "",
            "best_acc_mean": _num(row.best_accuracy.mean) if row.best_accuracy else "",
            "best_acc_std": _num(row.best_accuracy.std) if row.best_accuracy else "",
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
        f"{_figure_title(row0)}: dots = seeds, bar = mean ± std, × = paper",
        fontsize=9,
    )
    fig.text(0.01, 0.01, row0.budget, fontsize=7)
    fig.tight_layout(rect=(0, 0.04, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)


CURVE_COLUMNS = (
    run_record.TRAIN_LOSS, run_record.TEST_LOSS, run_record.TEST_ACC, run_record.TEST_MACRO_F1,
)  # fmt: skip
"""metrics.csv columns plotted as learning curves, in this order."""


def _curve(runs: Sequence[RunResult], column: str) -> tuple[list[int], list[float], list[float]]:
    """Epochs, mean and sample std (0 for one seed) of a metrics.csv column over runs, at
    the epochs every run that has the column recorded."""
    series = [dict(r.record.column(column)) for r in runs if r.record is not None]
    series = [values for values in series if values]
    if not series:
        return [], [], []
    epochs = sorted(set.intersection(*(set(v) for v in series)))
    means, stds = [], []
    for epoch in epochs:
        summary = summarize([v[epoch] for v in series])
        means.append(summary.mean)
        stds.append(summary.std if summary.n > 1 else 0.0)
    return epochs, means, stds


def plot_curves(rows: Sequence[ArmRow], path: Path) -> bool:
    """Learning curves from each run's ``metrics.csv``: per arm, the mean over seeds with a
    ± one-std band.

    Returns:
        False (and writes nothing) if no run has a usable ``metrics.csv``.
    """
    curves = {
        (row.arm, column): _curve(row.runs, column) for row in rows for column in CURVE_COLUMNS
    }
    columns = [c for c in CURVE_COLUMNS if any(curves[(r.arm, c)][0] for r in rows)]
    if not columns:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(columns), figsize=(4 * len(columns), 3.4), squeeze=False)
    for ax, name in zip(axes[0], columns, strict=True):
        for i, row in enumerate(rows):
            epochs, means, stds = curves[(row.arm, name)]
            if not epochs:
                continue
            colour = f"C{i}"
            low = [m - s for m, s in zip(means, stds, strict=True)]
            high = [m + s for m, s in zip(means, stds, strict=True)]
            ax.plot(epochs, means, color=colour, lw=1.2, label=f"{row.arm} (n={row.accuracy.n})")
            ax.fill_between(epochs, low, high, color=colour, alpha=0.2, lw=0)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    row0 = rows[0]
    fig.suptitle(f"{_figure_title(row0)}: mean ± std over seeds", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _figure_title(row: ArmRow) -> str:
    return (f"{DATASET_TITLES.get(row.dataset, row.dataset)} "
            f"({split_title(row.dataset, row.split)}) / "
            f"{BACKBONE_TITLES.get(row.backbone, row.backbone)}")


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
    fig.suptitle(f"{_figure_title(rows[0])}: last-epoch test confusion", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
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


def _stem(row: ArmRow) -> str:
    name = row.dataset if row.split == DEFAULT_SPLIT else f"{row.dataset}-{row.split}"
    return f"{name}_{row.backbone}"


def _display_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (so that a report
    of committed records is the same file in every clone), else as given."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


def write_report(runs_dirs: Path | str | Sequence[Path | str], out: Path | str | None = None,
                 confidence: float = 0.95, plots: bool = True) -> ReportFiles:
    """Reads every finished run under one or several runs dirs and writes the report files.

    Several dirs (shards, machines, exported records) are merged by cell; a cell found in
    two of them with a different config or different results is refused
    (:func:`~qhead.experiments.results.merge_runs`).

    Writes ``report.md``, ``summary.csv`` (one row per dataset × split × backbone × arm),
    ``runs.csv`` (one row per run) and, with ``plots``, ``scores_<d>_<b>.png``,
    ``curves_<d>_<b>.png`` and ``confusion_<d>_<b>.png`` into ``out`` (default:
    ``<first runs dir>/report``); ``<d>`` is ``<dataset>-<split>`` for a split other than
    the paper's.

    Raises:
        DataError: if the dirs hold no finished run, or cells conflict.
    """
    roots = [Path(runs_dirs)] if isinstance(runs_dirs, (str, Path)) else list(map(Path, runs_dirs))
    if not roots:
        raise DataError("no runs dir given")
    out_dir = Path(out) if out is not None else roots[0] / "report"
    runs, problems = collect_runs(roots)
    if not runs:
        detail = f" ({len(problems)} unfinished/unreadable: {problems[0]} ...)" if problems else ""
        where = ", ".join(map(str, roots))
        raise DataError(f"{where}: no finished run (no readable final.json){detail}")
    rows = aggregate(runs, confidence)
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = out_dir / "report.md"
    markdown.write_text(markdown_tables(rows, problems, confidence))
    summary = out_dir / "summary.csv"
    _write_csv(summary, CSV_COLUMNS, csv_rows(rows))
    runs_csv = out_dir / "runs.csv"
    _write_csv(
        runs_csv,
        ("dataset", "backbone", "arm", "seed", "accuracy", "macro_f1", "params_head", "run_dir",
         "split", "best_accuracy", "best_epoch"),
        [
            {
                "dataset": r.dataset, "backbone": r.backbone, "arm": r.arm, "seed": r.seed,
                "accuracy": _num(r.accuracy), "macro_f1": _num(r.macro_f1),
                "params_head": "" if r.params_head is None else r.params_head,
                "run_dir": _display_path(r.run_dir), "split": r.split,
                "best_accuracy": _num(r.best_accuracy),
                "best_epoch": "" if r.best_epoch is None else r.best_epoch,
            }
            for r in runs
        ],
    )
    written: list[Path] = []
    if plots:
        groups: dict[str, list[ArmRow]] = defaultdict(list)
        for row in rows:
            groups[_stem(row)].append(row)
        for stem, group in groups.items():
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
