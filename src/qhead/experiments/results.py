"""Reading finished runs back: identity, budget, final metrics, curves, confusion matrices.

Only a run's record is read (``cell.json``, ``config.yaml``, ``final.json``,
``metrics.csv``; see :mod:`qhead.engine.record`), so a report can be made on a machine that
only holds copied run dirs or exported records.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qhead.engine import record as run_record
from qhead.engine.record import CELL_FILE, CONFIG_FILE, FINAL_FILE, RunRecord, read_record
from qhead.errors import DataError
from qhead.experiments.grid import ARMS, DATASET_KEY, SEED_KEY, arm_spec, flatten

BACKBONE_KEY = "model.backbone"
HEAD_KEY = "model.head"

BUDGET_SUFFIXES = ("epochs", "image_size", "batch_size", "lr", "optimizer", "weight_decay")
"""Config keys (by last dotted part) shown in every table's budget line."""


@dataclass
class RunResult:
    """One finished run.

    Attributes:
        run_dir: the run directory.
        dataset, backbone, arm, seed: the cell.
        accuracy: test accuracy (fraction).
        macro_f1: test macro-averaged F1 (fraction).
        params_head: Params* (trainable parameters after the backbone), if recorded.
        budget: the budget settings of the run, ``{"train.epochs": 10, ...}``.
        overrides: the grid's overrides of the run (from ``cell.json``).
        confusion: confusion matrix ``[C][C]`` (rows true, columns predicted) if found.
        classes: class names if found.
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
    record: RunRecord | None = field(default=None, repr=False, compare=False)

    @property
    def group(self) -> tuple[str, str]:
        return (self.dataset, self.backbone)


def _identity(run_dir: Path, cell: Mapping[str, Any] | None, config: Mapping[str, Any] | None):
    if cell:
        return (str(cell["dataset"]), str(cell["backbone"]), str(cell["arm"]), int(cell["seed"]))
    # fall back on the run-dir layout <dataset>/<backbone>/<arm>/seed<k>
    parts = run_dir.parts
    if len(parts) >= 4 and parts[-1].startswith("seed") and parts[-1][4:].isdigit():
        return parts[-4], parts[-3], parts[-2], int(parts[-1][4:])
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
    return str(dataset), str(backbone), str(head), int(seed)


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
    dataset, backbone, arm, seed = _identity(run.run_dir, run.cell, run.config)
    accuracy, macro_f1 = run.accuracy, run.macro_f1
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
        record=run,
    )


def collect_runs(root: Path | str) -> tuple[list[RunResult], list[str]]:
    """All finished runs under ``root`` (any depth), and one line per run dir skipped.

    A run dir that has a ``cell.json`` or ``config.yaml`` but no ``final.json`` is listed
    as unfinished; an unreadable ``final.json`` is listed with the reason.
    """
    root = Path(root)
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
    results.sort(key=lambda r: (r.dataset, r.backbone, arm_order(r.arm), r.seed))
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


def read_metrics_csv(run_dir: Path | str) -> dict[str, list[float]]:
    """``metrics.csv`` as ``{column: [value per row]}`` (numeric columns only)."""
    rows = run_record.read_metrics(Path(run_dir) / run_record.METRICS_FILE)
    columns: dict[str, list[float]] = {}
    for name in rows[0].keys() if rows else ():
        values = []
        for row in rows:
            try:
                values.append(float(row[name]))
            except (TypeError, ValueError):
                break
        else:
            columns[name] = values
    return columns
