"""The numbers the paper reports (Tables 3 and 4), for printing beside ours.

Transcribed from ``paper.txt`` into each dataset's spec in :mod:`qhead.dataspec` (one
run per cell in the paper, no seeds stated); this module arranges them as tables. The
OCR of Table 4 is garbled ("7697%", "2232%"); the values were checked against the
paper's own text: MaxViT-T_q gains "up to 9.21 % accuracy" (Aircraft 22.32 − 13.11) and
"up to 15.79 % F1" (Aircraft 22.35 − 6.56); ResNet-18_q "up to 5.70 % / 5.53 %" (BUSI).

Keys are ``(dataset, backbone, arm)`` with ``arm`` in ``{"classical", "quantum"}`` and
the registry names used by qhead's presets (``busi``, ``resnet18``, ``maxvit_t``).
Accuracy and macro-F1 are fractions in [0, 1].
"""

from __future__ import annotations

from qhead.dataspec import DATASET_SPECS, PAPER_ARMS, PAPER_BACKBONES, PAPER_DATASETS, PaperCell

__all__ = [
    "BACKBONE_TITLES",
    "DATASET_TITLES",
    "PAPER_ARMS",
    "PAPER_BACKBONES",
    "PAPER_DATASETS",
    "PAPER_RESULTS",
    "PaperCell",
    "paper_cell",
]

DATASET_TITLES: dict[str, str] = {n: DATASET_SPECS.get(n).title for n in PAPER_DATASETS}
"""The paper's table title of each dataset (``busi`` → ``BUSI``)."""

BACKBONE_TITLES: dict[str, str] = {"resnet18": "ResNet-18", "maxvit_t": "MaxViT-T"}

PAPER_RESULTS: dict[tuple[str, str, str], PaperCell] = {
    (name, backbone, arm): DATASET_SPECS.get(name).paper[(backbone, arm)]
    for backbone in PAPER_BACKBONES
    for name in PAPER_DATASETS
    for arm in PAPER_ARMS
}
"""Tables 3 (ResNet-18) and 4 (MaxViT-T), from the dataset specs (:mod:`qhead.dataspec`)."""


def paper_cell(dataset: str, backbone: str, arm: str) -> PaperCell | None:
    """The paper's row for a cell, or ``None`` if the paper has none (controls, other data)."""
    return PAPER_RESULTS.get((dataset, backbone, arm))
