"""Classification metrics and the plots (the per-epoch ``metrics.csv`` is defined in
:mod:`qhead.engine.record`).

F1 is always **macro-averaged** (the unweighted mean of the per-class F1 scores, the
paper's metric) and named ``macro_f1``. The mean runs over **every class of the
dataset** (the model's outputs), also a class with no sample in the evaluated split:
such a class scores F1 = 0 (and a false positive for it costs precision), so a split
that lacks a class lowers macro-F1 by at least ``1 / C`` of a perfect score.
:func:`missing_class_warnings` names such classes; ``qhead train`` prints them.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

# the metrics.csv format is part of the run record; re-exported here for existing callers
from qhead.engine.record import (
    METRICS_COLUMNS,
    read_metrics,
    truncate_metrics,
    write_metrics_row,
)

__all__ = [
    "METRICS_COLUMNS",
    "classification_metrics",
    "learning_curves_figure",
    "missing_class_warnings",
    "plot_confusion",
    "plot_learning_curves",
    "read_metrics",
    "truncate_metrics",
    "write_confusion_csv",
    "write_metrics_row",
]


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
        predicted)}``. ``macro_f1`` is the mean over all C classes: a class absent from
        ``labels`` scores F1 = 0 (sklearn's ``zero_division=0``), see the module docstring.
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


def missing_class_warnings(
    labels_by_split: Mapping[str, Sequence[int] | None], classes: Sequence[str]
) -> list[str]:
    """One message per split that has no sample of some class (``None``: not known).

    Args:
        labels_by_split: split name (``"train"``, ``"test"``) → the labels of its samples.
        classes: the class names, indexed by label.

    Returns:
        e.g. ``["the test split has no image of class 'c' (classes: a, b, c); macro-F1
        averages over all 3 classes and scores F1 = 0 for it"]``.
    """
    messages = []
    for split, labels in labels_by_split.items():
        if labels is None:
            continue
        present = set(int(label) for label in labels)
        absent = [str(name) for i, name in enumerate(classes) if i not in present]
        if not absent:
            continue
        names = ", ".join(repr(name) for name in absent)
        noun = "class" if len(absent) == 1 else "classes"
        consequence = (
            f"macro-F1 averages over all {len(classes)} classes and scores F1 = 0 for "
            f"{'it' if len(absent) == 1 else 'them'}" if split != "train"
            else "the model never sees an example of it" if len(absent) == 1
            else "the model never sees an example of them"
        )
        messages.append(f"the {split} split has no image of {noun} {names} (classes: "
                        f"{', '.join(map(str, classes))}); {consequence}")
    return messages


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
    fig = learning_curves_figure(runs, title)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def learning_curves_figure(runs: dict[str, list[dict[str, str]]], title: str = "") -> Any:
    """The figure :func:`plot_learning_curves` writes (a matplotlib ``Figure``; the
    caller closes it). Epoch ticks are whole numbers, also for runs of a few epochs."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

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
    for ax in (ax_loss, ax_score):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _series(epochs: list[int], rows: list[dict[str, str]], key: str) -> tuple[list, list]:
    xs, ys = [], []
    for epoch, row in zip(epochs, rows, strict=True):
        value = row.get(key, "")
        if value not in ("", None):
            xs.append(epoch)
            ys.append(float(value))
    return xs, ys
