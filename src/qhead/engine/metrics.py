"""Classification metrics, the per-epoch ``metrics.csv`` and the plots.

F1 is always **macro-averaged** (the unweighted mean of the per-class F1 scores, the
paper's metric) and named ``macro_f1``.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "METRICS_COLUMNS",
    "classification_metrics",
    "plot_confusion",
    "plot_learning_curves",
    "read_metrics",
    "truncate_metrics",
    "write_confusion_csv",
    "write_metrics_row",
]

METRICS_COLUMNS: tuple[str, ...] = (
    "epoch", "train_loss", "train_acc", "test_loss", "test_acc", "test_macro_f1", "lr", "seconds",
)  # fmt: skip


def classification_metrics(
    logits: torch.Tensor, labels: torch.Tensor, classes: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro-F1, mean cross-entropy, per-class scores and confusion matrix.

    Args:
        logits: ``[N, C]`` float.
        labels: ``[N]`` int, in ``[0, C)``.
        classes: the C class names.

    Returns:
        ``{"n", "loss", "accuracy", "macro_f1", "per_class": {name: {"precision",
        "recall", "f1", "support"}}, "confusion_matrix": [[int]] (rows true, columns
        predicted)}``. Classes absent from both labels and predictions score 0.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    n_classes = len(classes)
    if logits.dim() != 2 or logits.shape[1] != n_classes:
        raise ValueError(f"logits must be [N, {n_classes}], got {tuple(logits.shape)}")
    logits = logits.float()
    y = labels.long().cpu().numpy()
    pred = logits.argmax(dim=1).cpu().numpy()
    loss = (
        float(torch.nn.functional.cross_entropy(logits, labels.long().to(logits.device)))
        if len(y) else float("nan")
    )
    ids = list(range(n_classes))
    precision, recall, f1, support = precision_recall_fscore_support(
        y, pred, labels=ids, average=None, zero_division=0
    )
    cm = confusion_matrix(y, pred, labels=ids)
    return {
        "n": len(y),
        "loss": loss,
        "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
        "macro_f1": float(np.mean(f1)),
        "per_class": {
            str(name): {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        },
        "confusion_matrix": cm.astype(int).tolist(),
    }


def write_metrics_row(path: Path, row: dict[str, Any]) -> None:
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
    rows = [r for r in read_metrics(path) if int(r["epoch"]) <= last_epoch]
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=METRICS_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def write_confusion_csv(
    path: Path, matrix: Sequence[Sequence[int]], classes: Sequence[str]
) -> None:
    """Confusion matrix as CSV: header ``true\\predicted,<classes>``, one row per true class."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["true\\predicted", *classes])
        for name, row in zip(classes, matrix, strict=True):
            writer.writerow([name, *row])


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(
    path: Path, matrix: Sequence[Sequence[int]], classes: Sequence[str], title: str = ""
) -> None:
    """Confusion-matrix heat map with counts (rows: true class, columns: predicted)."""
    plt = _pyplot()
    cm = np.asarray(matrix)
    size = max(4.0, 0.6 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(classes)), labels=list(classes), rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), labels=list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = cm.max() / 2 if cm.size else 0
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            color = "white" if cm[i, j] > threshold else "black"
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color=color, fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_learning_curves(
    path: Path, runs: dict[str, list[dict[str, str]]], title: str = ""
) -> None:
    """Loss (train, test) and test accuracy / macro-F1 per epoch, one colour per run.

    Args:
        path: the PNG to write.
        runs: label → rows of ``metrics.csv``.
        title: figure title.
    """
    plt = _pyplot()
    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (label, rows) in enumerate(runs.items()):
        color = f"C{i}"
        epochs = [int(r["epoch"]) for r in rows]
        for key, style, name in (("train_loss", "-", "train"), ("test_loss", "--", "test")):
            xs, ys = _series(epochs, rows, key)
            if xs:
                ax_loss.plot(xs, ys, style, color=color, label=f"{label} {name}")
        for key, style, name in (("test_acc", "-", "accuracy"), ("test_macro_f1", ":", "macro-F1")):
            xs, ys = _series(epochs, rows, key)
            if xs:
                ax_score.plot(xs, ys, style, color=color, marker=".", label=f"{label} {name}")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.legend(fontsize=8)
    ax_score.set_xlabel("epoch")
    ax_score.set_ylabel("test score")
    ax_score.set_ylim(0, 1.02)
    ax_score.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _series(epochs: list[int], rows: list[dict[str, str]], key: str) -> tuple[list, list]:
    xs, ys = [], []
    for epoch, row in zip(epochs, rows, strict=True):
        value = row.get(key, "")
        if value not in ("", None):
            xs.append(epoch)
            ys.append(float(value))
    return xs, ys
