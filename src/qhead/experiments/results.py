"""Reading finished runs back: identity, budget, final metrics, curves, confusion matrices.

Only a run's record is read (``cell.json``, ``config.yaml``, ``final.json``,
``metrics.csv``; see :mod:`qhead.engine.record`), so a report can be made on a machine that
only holds copied run dirs or exported records.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qhead.engine.record import CELL_FILE, CONFIG_FILE, FINAL_FILE, RunRecord, read_record
from qhead.errors import DataError
from qhead.experiments.grid import (
    ARMS,
    DATASET_KEY,
    DEFAULT_SPLIT,
    SEED_KEY,
    SPLIT_KEY,
    UNTRACKED_KEYS,
    arm_spec,
    config_differences,
)
from qhead.overrides import flatten

BACKBONE_KEY = "model.backbone"
HEAD_KEY = "model.head"

EXECUTION_KEYS: frozenset[str] = frozenset(
    {"data.num_workers", "data.cache", "plots", "tensorboard", "progress", "threads", "device",
     "out", *UNTRACKED_KEYS}
)
"""Config keys that change how or where a run executed, not what it computed: ignored when
two copies of one cell are compared (a run moved to another machine is the same run)."""

BUDGET_SUFFIXES = ("epochs", "image_size", "batch_size", "lr", "optimizer", "weight_decay")
"""Config keys (by last dotted part) shown in every table's budget line."""


@dataclass
class RunResult:
    """One finished run.

    Attributes:
        run_dir: the run directory.
        dataset, backbone, arm, seed: the cell.
        accuracy: test accuracy (fraction) of the last epoch.
        macro_f1: test macro-averaged F1 (fraction).
        params_head: Params* (trainable parameters after the backbone), if recorded.
        budget: the budget settings of the run, ``{"train.epochs": 10, ...}``.
        overrides: the grid's overrides of the run (from ``cell.json``).
        confusion: confusion matrix ``[C][C]`` (rows true, columns predicted) if found.
        classes: class names if found.
        split: the dataset split (``"paper"`` unless the run names another).
        best_accuracy: the highest test accuracy over the epochs of ``metrics.csv``
            (``None`` without it): selected on the test split, so optimistic.
        best_epoch: the epoch of ``best_accuracy``.
        record: the run's record as read (:class:`~qhead.engine.record.RunRecord`).
    """

    run_dir: Path
    dataset: str
    backbone: str
    arm: str
    seed: int
    accuracy: float
    macro_f1: float
    params_head: int | None = None
    budget: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    confusion: list[list[int]] | None = None
    classes: list[str] | None = None
    split: str = DEFAULT_SPLIT
    best_accuracy: float | None = None
    best_epoch: int | None = None
    record: RunRecord | None = field(default=None, repr=False, compare=False)

    @property
    def group(self) -> tuple[str, str]:
        return (self.dataset, self.backbone)

    @property
    def cell_key(self) -> str:
        """``busi/resnet18/quantum/seed0`` (``busi-grouped/...`` for another split): the
        cell's path in a grid's output dir and in an export of records."""
        name = self.dataset if self.split == DEFAULT_SPLIT else f"{self.dataset}-{self.split}"
        return f"{name}/{self.backbone}/{self.arm}/seed{self.seed}"


def _split(cell: Mapping[str, Any] | None, config: Mapping[str, Any] | None) -> str:
    if cell and cell.get("split"):
        return str(cell["split"])
    value = flatten(config or {}).get(SPLIT_KEY)
    return str(value) if value else DEFAULT_SPLIT


def _identity(
    run_dir: Path, cell: Mapping[str, Any] | None, config: Mapping[str, Any] | None
) -> tuple[str, str, str, int, str]:
    """``(dataset, backbone, arm, seed, split)`` of a run dir."""
    split = _split(cell, config)
    if cell:
        return (str(cell["dataset"]), str(cell["backbone"]), str(cell["arm"]), int(cell["seed"]),
                split)
    # fall back on the run-dir layout <dataset>[-<split>]/<backbone>/<arm>/seed<k>
    parts = run_dir.parts
    if len(parts) >= 4 and parts[-1].startswith("seed") and parts[-1][4:].isdigit():
        dataset = parts[-4].removesuffix(f"-{split}") if split != DEFAULT_SPLIT else parts[-4]
        return dataset, parts[-3], parts[-2], int(parts[-1][4:]), split
    # then on the config the engine saved (a plain ``qhead train`` run: the arm is its head)
    flat = flatten(config or {})
    names = [flat.get(key) for key in (DATASET_KEY, BACKBONE_KEY, HEAD_KEY, SEED_KEY)]
    if None in names:
        raise DataError(
            f"{run_dir}: cannot tell which cell this run is (no {CELL_FILE}, "
            f"no <dataset>/<backbone>/<arm>/seed<k> layout, {CONFIG_FILE} lacks "
            f"{DATASET_KEY}/{BACKBONE_KEY}/{HEAD_KEY}/{SEED_KEY})"
        )
    dataset, backbone, head, seed = names
    return str(dataset), str(backbone), str(head), int(seed), split


def budget_of(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The budget-relevant settings of a run config (epochs, image size, batch, lr, ...)."""
    flat = flatten(config or {})
    out = {}
    for key in sorted(flat):
        last = key.rsplit(".", 1)[-1]
        value = flat[key]
        if last in BUDGET_SUFFIXES and value is not None and not isinstance(value, (dict, list)):
            out[key] = value
    # the engine keeps these three equal; one of them is enough on a table
    if out.get("model.image_size") == out.get("data.image_size") is not None:
        out.pop("model.image_size")
        if out.get("image_size") == out["data.image_size"]:
            out.pop("image_size")
    return out


_PARAMS_CACHE: dict[str, int | None] = {}


def params_from_config(config: Mapping[str, Any]) -> int | None:
    """Params* of the model a run config describes (built once per distinct model config).

    Used when ``final.json`` does not record it; ``None`` if the model cannot be built
    (e.g. its backbone needs an extra that is not installed here).
    """
    model = config.get("model")
    if not isinstance(model, Mapping):
        return None
    key = json.dumps(model, sort_keys=True, default=str)
    if key not in _PARAMS_CACHE:
        try:
            from qhead.models import ModelConfig, build_model, count_parameters

            built = build_model(ModelConfig.from_dict(dict(model)))
            _PARAMS_CACHE[key] = count_parameters(built.head)
        except Exception:  # a report must not fail on one unbuildable model
            _PARAMS_CACHE[key] = None
    return _PARAMS_CACHE[key]


def load_run(run_dir: Path | str) -> RunResult:
    """Reads one finished run dir.

    Raises:
        DataError: if ``final.json`` is missing, unreadable or lacks accuracy / macro-F1.
    """
    run = read_record(run_dir)
    if not run.finished:
        raise DataError(f"{run.run_dir}: no {FINAL_FILE} (run not finished)")
    dataset, backbone, arm, seed, split = _identity(run.run_dir, run.cell, run.config)
    accuracy, macro_f1 = run.accuracy, run.macro_f1
    best = run.best_test_accuracy()
    params = run.params_head
    if params is None and run.config is not None:
        params = params_from_config(run.config)
    return RunResult(
        run_dir=run.run_dir,
        dataset=dataset,
        backbone=backbone,
        arm=arm,
        seed=seed,
        accuracy=accuracy,
        macro_f1=macro_f1,
        params_head=params,
        budget=budget_of(run.config),
        overrides=dict((run.cell or {}).get("overrides", {})),
        confusion=run.confusion,
        classes=run.classes,
        split=split,
        best_accuracy=best[0] if best else None,
        best_epoch=best[1] if best else None,
        record=run,
    )


def _scan(root: Path) -> tuple[list[RunResult], list[str]]:
    if not root.is_dir():
        raise DataError(f"{root}: not a directory of runs")
    results: list[RunResult] = []
    problems: list[str] = []
    seen: set[Path] = set()
    for final in sorted(root.rglob(FINAL_FILE)):
        seen.add(final.parent)
        try:
            results.append(load_run(final.parent))
        except DataError as error:
            problems.append(str(error))
    for marker in sorted([*root.rglob(CELL_FILE), *root.rglob(CONFIG_FILE)]):
        if marker.parent not in seen:
            seen.add(marker.parent)
            problems.append(f"{marker.parent}: unfinished (no {FINAL_FILE})")
    return results, problems


def run_differences(a: RunResult, b: RunResult) -> list[str]:
    """How two finished runs of one cell differ in what they computed: config keys (other
    than :data:`EXECUTION_KEYS`), then results; empty when they are copies of one run."""
    config_a = (a.record.config if a.record else None) or {}
    config_b = (b.record.config if b.record else None) or {}
    ignore = [*EXECUTION_KEYS, *(f"{k}." for k in EXECUTION_KEYS)]
    flat_a, flat_b = flatten(config_a), flatten(config_b)
    lines = []
    for line in config_differences(config_a, config_b, ignore=ignore):
        key = line.split(":", 1)[0]
        lines.append(f"{key} = {flat_a.get(key, '(absent)')!r} in {a.run_dir}, "
                     f"{flat_b.get(key, '(absent)')!r} in {b.run_dir}")
    if lines:
        return lines
    for name in ("accuracy", "macro_f1"):
        if getattr(a, name) != getattr(b, name):
            lines.append(f"same config, different results ({name} {getattr(a, name):.6f} in "
                         f"{a.run_dir}, {getattr(b, name):.6f} in {b.run_dir}): the cell was "
                         "trained twice")
            break
    return lines


def merge_runs(groups: Sequence[Sequence[RunResult]]) -> list[RunResult]:
    """One run per cell from several runs dirs (shards, machines, exported records).

    Copies of one run (same config apart from paths and threads, same results) count once,
    the first one given.

    Raises:
        DataError: for a cell found twice with a different config (budget, model, data)
            or different results, naming the cell, both places and the difference.
    """
    by_cell: dict[str, RunResult] = {}
    for group in groups:
        for run in group:
            first = by_cell.get(run.cell_key)
            if first is None:
                by_cell[run.cell_key] = run
                continue
            differences = run_differences(first, run)
            if differences:
                raise DataError(
                    f"cell {run.cell_key} conflicts between {first.run_dir} and {run.run_dir}: "
                    + "; ".join(differences[:5])
                    + (f" (+{len(differences) - 5} more)" if len(differences) > 5 else "")
                    + "; report them separately or remove one"
                )
    return list(by_cell.values())


def collect_runs(
    roots: Path | str | Sequence[Path | str],
) -> tuple[list[RunResult], list[str]]:
    """All finished runs under one or several runs dirs (any depth), merged by cell, and
    one line per run dir skipped.

    A run dir that has a ``cell.json`` or ``config.yaml`` but no ``final.json`` is listed
    as unfinished; an unreadable ``final.json`` is listed with the reason. Several dirs are
    merged with :func:`merge_runs` (a cell in two of them must be the same run).

    Raises:
        DataError: for a path that is not a directory, or conflicting cells.
    """
    if isinstance(roots, (str, Path)):
        roots = [roots]
    scanned = [_scan(Path(root)) for root in roots]
    problems = [line for _, lines in scanned for line in lines]
    results = merge_runs([runs for runs, _ in scanned])
    results.sort(key=lambda r: (r.dataset, r.split != DEFAULT_SPLIT, r.split, r.backbone,
                                arm_order(r.arm), r.seed))
    return results, problems


def arm_order(arm: str) -> tuple[int, str]:
    """Sort key: known arms in :data:`ARMS` order (classical first), then others by name."""
    names = list(ARMS)
    return (names.index(arm), arm) if arm in names else (len(names), arm)


def arm_overrides(arm: str) -> dict[str, Any]:
    """The overrides an arm adds by itself (not budget), for telling them apart."""
    try:
        return dict(arm_spec(arm).overrides)
    except Exception:
        return {}
