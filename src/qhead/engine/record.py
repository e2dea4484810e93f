"""The run record: the one definition of a run directory's files and their keys.

A run dir is written by ``qhead train`` (rank 0 only); ``qhead reproduce`` adds the cell's
identity, its log and its lock::

    config.yaml   CONFIG_FILE      the resolved TrainConfig (qhead.engine.config.save_config)
    metrics.csv   METRICS_FILE     one row per epoch, columns METRICS_COLUMNS
    final.json    FINAL_FILE       final metrics (last epoch), Params*, confusion matrix,
                                   classes, environment and versions; keys below
    last.pt       LAST_CHECKPOINT  checkpoint after every epoch (qhead.engine.checkpoint)
    best.pt       BEST_CHECKPOINT  checkpoint of the best epoch by ``select_metric``
    curves.png    CURVES_FILE      learning curves
    tb/           TENSORBOARD_DIR  TensorBoard logs (optional)
    <ckpt>.eval[.<split>][.shots<S>][.<backend>].{json,confusion.csv,confusion.png}
                  evaluation_files  what ``qhead evaluate`` writes beside a checkpoint
    cell.json     CELL_FILE        the grid cell: dataset, backbone, arm, seed, split, preset,
                                   overrides, fingerprint (qhead.experiments.grid.cell_record)
    train.log     LOG_FILE         the training process's output (grid runs)
    .lock         LOCK_FILE        held while a grid process owns the cell

The **record** of a run is the small text part, :data:`RECORD_FILES` (``cell.json``,
``config.yaml``, ``final.json``, ``metrics.csv``; a few KiB, no checkpoint): everything
``qhead report`` needs. :func:`read_record` reads it back, including run dirs written
before ``final.json`` carried a ``versions`` entry (they recorded only ``torch``).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qhead.errors import DataError

if TYPE_CHECKING:
    from qhead.engine.config import TrainConfig

__all__ = [
    "BEST_CHECKPOINT",
    "CELL_FILE",
    "CONFIG_FILE",
    "FINAL_FILE",
    "LAST_CHECKPOINT",
    "LOCK_FILE",
    "LOG_FILE",
    "METRICS_COLUMNS",
    "METRICS_FILE",
    "RECORD_FILES",
    "RunRecord",
    "evaluation_files",
    "final_summary",
    "read_cell_record",
    "read_config",
    "read_final",
    "read_metrics",
    "read_record",
    "truncate_metrics",
    "versions",
    "write_cell_record",
    "write_final",
    "write_metrics_row",
]

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.csv"
FINAL_FILE = "final.json"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
CURVES_FILE = "curves.png"
TENSORBOARD_DIR = "tb"
CELL_FILE = "cell.json"
LOG_FILE = "train.log"
LOCK_FILE = ".lock"

CHECKPOINTS: tuple[str, ...] = (LAST_CHECKPOINT, BEST_CHECKPOINT)
"""Checkpoint files in order of preference for evaluating a run: ``last.pt`` is the model
the report's numbers come from; ``best.pt`` was selected on the test split."""

RECORD_FILES: tuple[str, ...] = (CELL_FILE, CONFIG_FILE, FINAL_FILE, METRICS_FILE)
"""The files that make a run's record (what ``qhead export-records`` copies)."""

# metrics.csv: one row per epoch; test_* are empty on epochs without evaluation
EPOCH, TRAIN_LOSS, TRAIN_ACC, TEST_LOSS, TEST_ACC, TEST_MACRO_F1, LR, SECONDS = (
    "epoch", "train_loss", "train_acc", "test_loss", "test_acc", "test_macro_f1", "lr", "seconds",
)  # fmt: skip
METRICS_COLUMNS: tuple[str, ...] = (
    EPOCH, TRAIN_LOSS, TRAIN_ACC, TEST_LOSS, TEST_ACC, TEST_MACRO_F1, LR, SECONDS,
)  # fmt: skip

# final.json keys read back by evaluate / report / shots / the grid
ACCURACY = "accuracy"
MACRO_F1 = "macro_f1"
PARAMS_HEAD = "params_after_backbone"
"""Params*: trainable parameters after the backbone (the paper's column)."""
PARAMS_TOTAL = "params_total"
CONFUSION = "confusion_matrix"
"""``[C][C]`` ints, rows true class, columns predicted, in the order of ``classes``."""
CLASSES = "classes"
VERSIONS = "versions"
EPOCHS = "epochs"
BEST_EPOCH = "best_epoch"


def versions() -> dict[str, str]:
    """Versions of what computed a run: Python, qhead, torch, numpy and, if installed,
    PennyLane and timm (from package metadata, without importing them)."""
    import numpy
    import torch

    from qhead import __version__

    out = {"python": platform.python_version(), "qhead": __version__,
           "torch": torch.__version__, "numpy": numpy.__version__}
    for name in ("pennylane", "timm", "torchvision"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def final_summary(
    cfg: TrainConfig,
    metrics: Mapping[str, Any],
    *,
    classes: Sequence[str],
    params_head: int,
    params_total: int,
    seconds: float,
    best_metric: float | None,
    best_epoch: int | None,
    device: str,
    precision: str,
    world_size: int,
) -> dict[str, Any]:
    """What ``final.json`` holds at the end of a training run.

    Args:
        cfg: the run's config.
        metrics: the last evaluated epoch's row merged with its
            :func:`~qhead.engine.metrics.classification_metrics` (``accuracy``, ``macro_f1``,
            ``loss``, ``per_class``, ``confusion_matrix``, ``n``, ``epoch``, ``train_*``).
        classes: class names (the order of the confusion matrix).
        params_head, params_total: Params* and all parameters.
        seconds: training seconds (all epochs, across resumes).
        best_metric, best_epoch: the best ``cfg.select_metric`` value and its epoch.
        device, precision, world_size: where and how it ran.
    """
    import torch

    return {
        ACCURACY: metrics.get("accuracy"),
        MACRO_F1: metrics.get("macro_f1"),
        "test_loss": metrics.get("loss"),
        "train_loss": metrics.get("train_loss"),
        "train_acc": metrics.get("train_acc"),
        EPOCHS: int(metrics.get("epoch", cfg.epochs)),
        BEST_EPOCH: best_epoch,
        f"best_{cfg.select_metric}": best_metric,
        PARAMS_HEAD: params_head,
        PARAMS_TOTAL: params_total,
        "seconds": round(seconds, 3),
        CLASSES: list(classes),
        "per_class": metrics.get("per_class"),
        CONFUSION: metrics.get("confusion_matrix"),
        "n_test": metrics.get("n"),
        "model": {"backbone": cfg.model.backbone, "head": cfg.model.head,
                  "image_size": cfg.model.image_size},
        "dataset": cfg.data.name,
        "seed": cfg.seed,
        "device": device,
        "precision": precision,
        "world_size": world_size,
        "torch": torch.__version__,
        VERSIONS: versions(),
        "note": "accuracy / macro_f1 are the last epoch's test metrics (no test-set selection)",
    }


def evaluation_files(
    folder: Path | str,
    checkpoint: Path | str,
    split: str = "test",
    shots: int | None = None,
    backend: str | None = None,
) -> dict[str, Path]:
    """The files ``qhead evaluate`` writes for a checkpoint, split, shot count and backend:
    ``{"json", "confusion_csv", "confusion_png"}`` →
    ``<folder>/<stem>.eval[.<split>][.shots<S>][.<backend>].{json,confusion.csv,confusion.png}``
    (the split is named unless it is ``test``, the backend unless it is qhead's ``torch``;
    ``pennylane:default.qubit`` becomes ``pennylane-default.qubit``)."""
    stem = f"{Path(checkpoint).stem}.eval"
    if split != "test":
        stem += f".{split}"
    if shots is not None:
        stem += f".shots{shots}"
    if backend is not None and backend != "torch":
        stem += "." + backend.replace(":", "-")
    folder = Path(folder)
    return {
        "json": folder / f"{stem}.json",
        "confusion_csv": folder / f"{stem}.confusion.csv",
        "confusion_png": folder / f"{stem}.confusion.png",
    }


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def write_final(run_dir: Path | str, final: Mapping[str, Any]) -> Path:
    """Writes ``final.json`` atomically (a reader sees no file or the whole file)."""
    path = Path(run_dir) / FINAL_FILE
    _atomic_write_text(path, json.dumps(dict(final), indent=2))
    return path


def read_final(run_dir: Path | str) -> dict[str, Any] | None:
    """``final.json`` of a run dir, ``None`` if the run has not finished.

    Raises:
        DataError: if the file exists but is not a JSON object.
    """
    path = Path(run_dir) / FINAL_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: unreadable ({error})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object")
    return data


def read_config(run_dir: Path | str) -> dict[str, Any] | None:
    """The run's saved ``config.yaml`` as a dict, or ``None`` if absent or unreadable."""
    import yaml

    path = Path(run_dir) / CONFIG_FILE
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def read_cell_record(run_dir: Path | str) -> dict[str, Any] | None:
    """``cell.json`` of a run dir, or ``None`` if absent or unreadable."""
    path = Path(run_dir) / CELL_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_cell_record(run_dir: Path | str, record: Mapping[str, Any]) -> None:
    """Writes ``cell.json`` atomically (temporary file + rename)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(run_dir / CELL_FILE, json.dumps(dict(record), indent=2, default=str) + "\n")


def write_metrics_row(path: Path, row: Mapping[str, Any]) -> None:
    """Appends one epoch to ``metrics.csv`` (header written with the first row)."""
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=METRICS_COLUMNS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow({k: _fmt(row.get(k)) for k in METRICS_COLUMNS})
        handle.flush()


def _fmt(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def read_metrics(path: Path) -> list[dict[str, str]]:
    """Rows of ``metrics.csv`` (empty if missing)."""
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def truncate_metrics(path: Path, last_epoch: int) -> None:
    """Drops rows after ``last_epoch`` (epochs a killed run logged but did not checkpoint)."""
    rows = [r for r in read_metrics(path) if int(r[EPOCH]) <= last_epoch]
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=METRICS_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def _fraction(value: Any, what: str, path: Path) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{path}: {what} is not a number: {value!r}") from None
    if not (math.isfinite(v) and 0.0 <= v <= 1.0):
        raise DataError(f"{path}: {what} must be a fraction in [0, 1], got {value!r}")
    return v


@dataclass
class RunRecord:
    """A run dir's record as read back from its files (see the module docstring).

    Attributes:
        run_dir: the run directory.
        config: ``config.yaml`` as a nested dict (``None`` if absent).
        cell: ``cell.json`` (``None`` for a run not made by ``qhead reproduce``).
        final: ``final.json`` (``None`` while the run has not finished).
        metrics: rows of ``metrics.csv`` (strings, as written; empty if absent).
    """

    run_dir: Path
    config: dict[str, Any] | None
    cell: dict[str, Any] | None
    final: dict[str, Any] | None
    metrics: list[dict[str, str]] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.final is not None

    def _final(self) -> dict[str, Any]:
        if self.final is None:
            raise DataError(f"{self.run_dir}: no {FINAL_FILE} (run not finished)")
        return self.final

    def _required(self, key: str, what: str) -> float:
        final = self._final()
        if final.get(key) is None:
            raise DataError(
                f"{self.run_dir / FINAL_FILE}: needs accuracy ({ACCURACY!r}) and macro-F1 "
                f"({MACRO_F1!r}); found keys {sorted(final)}"
            )
        return _fraction(final[key], what, self.run_dir / FINAL_FILE)

    @property
    def accuracy(self) -> float:
        """Last-epoch test accuracy (fraction). Raises DataError if not recorded."""
        return self._required(ACCURACY, "accuracy")

    @property
    def macro_f1(self) -> float:
        """Last-epoch test macro-F1 (fraction). Raises DataError if not recorded."""
        return self._required(MACRO_F1, "macro-F1")

    @property
    def params_head(self) -> int | None:
        value = self._final().get(PARAMS_HEAD)
        return None if value is None else int(value)

    @property
    def confusion(self) -> list[list[int]] | None:
        matrix = self._final().get(CONFUSION)
        if isinstance(matrix, list) and matrix and all(isinstance(r, list) for r in matrix):
            return [[int(v) for v in row] for row in matrix]
        return None

    @property
    def classes(self) -> list[str] | None:
        names = self._final().get(CLASSES)
        return [str(c) for c in names] if isinstance(names, list) else None

    @property
    def versions(self) -> dict[str, str]:
        """Versions that computed the run (older runs recorded only ``torch``)."""
        final = self._final()
        recorded = final.get(VERSIONS)
        if isinstance(recorded, Mapping):
            return {str(k): str(v) for k, v in recorded.items()}
        return {"torch": str(final["torch"])} if final.get("torch") else {}

    def column(self, name: str) -> list[tuple[int, float]]:
        """``(epoch, value)`` of one ``metrics.csv`` column, skipping epochs without a value
        (test columns are empty on epochs that were not evaluated)."""
        out = []
        for row in self.metrics:
            value = row.get(name)
            if value in (None, ""):
                continue
            try:
                out.append((int(row[EPOCH]), float(value)))
            except (KeyError, TypeError, ValueError):
                continue
        return out

    def best_test_accuracy(self) -> tuple[float, int] | None:
        """The highest test accuracy over the evaluated epochs and its (first) epoch, or
        ``None`` without ``metrics.csv``. Selected on the test split: optimistic."""
        values = [(v, e) for e, v in self.column(TEST_ACC) if math.isfinite(v)]
        if not values:
            return None
        best = max(v for v, _ in values)
        return best, min(e for v, e in values if v == best)


def read_record(run_dir: Path | str) -> RunRecord:
    """Reads a run dir's record; missing files are ``None`` / empty.

    Raises:
        DataError: if ``final.json`` exists but is unreadable.
    """
    run_dir = Path(run_dir)
    return RunRecord(
        run_dir=run_dir,
        config=read_config(run_dir),
        cell=read_cell_record(run_dir),
        final=read_final(run_dir),
        metrics=read_metrics(run_dir / METRICS_FILE),
    )
