"""Reading finished runs back: identity, budget, final metrics, curves, confusion matrices.

Only files are read (``cell.json``, ``config.yaml``, ``final.json``, ``metrics.csv``,
evaluation JSON), so a report can be made on a machine that only holds copied run dirs.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qhead.errors import DataError
from qhead.experiments.grid import (
    ARMS,
    FINAL_FILE,
    arm_spec,
    flatten,
    read_cell_record,
    read_config,
)

ACCURACY_KEYS = ("accuracy", "test_accuracy", "acc", "test_acc")
F1_KEYS = ("macro_f1", "f1_macro", "test_macro_f1", "test_f1_macro", "f1")
PARAMS_KEYS = ("params_head", "head_params", "params_after_backbone", "params_star")
CONFUSION_KEYS = ("confusion_matrix", "confusion")

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

    @property
    def group(self) -> tuple[str, str]:
        return (self.dataset, self.backbone)


def _first(mapping: Mapping[str, Any], keys: Iterable[str]) -> Any:
    for key in keys:
        if key in mapping and mapping[key] is not None:
            return mapping[key]
    return None


def find_metric(final: Mapping[str, Any], keys: Iterable[str]) -> Any:
    keys = tuple(keys)
    value = _first(final, keys)
    if value is not None:
        return value
    for nested in ("test", "metrics", "eval", "evaluation", "best", "final"):
        sub = final.get(nested)
        if isinstance(sub, Mapping):
            value = _first(sub, keys)
            if value is not None:
                return value
    return None


def _as_fraction(value: Any, what: str, path: Path) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{path}: {what} is not a number: {value!r}") from None
    if not math.isfinite(v):
        raise DataError(f"{path}: {what} is not finite: {value!r}")
    # percentages are converted so that every table uses one unit
    return v / 100.0 if v > 1.0 else v


def _identity(run_dir: Path, record: Mapping[str, Any] | None, config: Mapping[str, Any] | None):
    if record:
        return (
            str(record["dataset"]),
            str(record["backbone"]),
            str(record["arm"]),
            int(record["seed"]),
        )
    # fall back on the run-dir layout <dataset>/<backbone>/<arm>/seed<k>
    parts = run_dir.parts
    if len(parts) >= 4 and parts[-1].startswith("seed") and parts[-1][4:].isdigit():
        return parts[-4], parts[-3], parts[-2], int(parts[-1][4:])
    flat = flatten(config or {})
    seed = _first(flat, ("seed", "train.seed"))
    dataset = _first(flat, ("data.name", "data.dataset"))
    backbone = _first(flat, ("model.backbone",))
    head = _first(flat, ("model.head",))
    if None in (seed, dataset, backbone, head):
        raise DataError(
            f"{run_dir}: cannot tell which cell this run is (no cell.json, "
            "no <dataset>/<backbone>/<arm>/seed<k> layout, config lacks names)"
        )
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


def _confusion(run_dir: Path, final: Mapping[str, Any]) -> tuple[Any, Any]:
    sources: list[Mapping[str, Any]] = [final]
    for path in sorted(run_dir.glob("*.json")):
        if path.name in (FINAL_FILE, "cell.json"):
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, Mapping):
            sources.append(data)
    for source in sources:
        cm = find_metric(source, CONFUSION_KEYS)
        if isinstance(cm, list) and cm and all(isinstance(r, list) for r in cm):
            classes = find_metric(source, ("classes", "class_names"))
            return [[int(v) for v in row] for row in cm], classes
    return None, None


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
    run_dir = Path(run_dir)
    final_path = run_dir / FINAL_FILE
    try:
        final = json.loads(final_path.read_text())
    except FileNotFoundError:
        raise DataError(f"{run_dir}: no {FINAL_FILE} (run not finished)") from None
    except (OSError, ValueError) as error:
        raise DataError(f"{final_path}: unreadable ({error})") from None
    if not isinstance(final, Mapping):
        raise DataError(f"{final_path}: expected a JSON object")
    record = read_cell_record(run_dir)
    config = read_config(run_dir)
    dataset, backbone, arm, seed = _identity(run_dir, record, config)
    acc = find_metric(final, ACCURACY_KEYS)
    f1 = find_metric(final, F1_KEYS)
    if acc is None or f1 is None:
        raise DataError(
            f"{final_path}: needs accuracy ({'/'.join(ACCURACY_KEYS)}) and macro-F1 "
            f"({'/'.join(F1_KEYS)}); found keys {sorted(final)}"
        )
    params = find_metric(final, PARAMS_KEYS)
    if params is None and config is not None:
        params = params_from_config(config)
    cm, classes = _confusion(run_dir, final)
    overrides = dict((record or {}).get("overrides", {}))
    return RunResult(
        run_dir=run_dir,
        dataset=dataset,
        backbone=backbone,
        arm=arm,
        seed=seed,
        accuracy=_as_fraction(acc, "accuracy", final_path),
        macro_f1=_as_fraction(f1, "macro-F1", final_path),
        params_head=int(params) if params is not None else None,
        budget=budget_of(config),
        overrides=overrides,
        confusion=cm,
        classes=list(classes) if classes else None,
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
    for marker in sorted([*root.rglob("cell.json"), *root.rglob("config.yaml")]):
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
    path = Path(run_dir) / "metrics.csv"
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError:
        return {}
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
