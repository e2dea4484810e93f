"""The numbers the paper reports (Tables 3 and 4), for printing beside ours.

Transcribed from ``paper.txt`` (one run per cell in the paper, no seeds stated). The
OCR of Table 4 is garbled ("7697%", "2232%"); the values below were checked against the
paper's own text: MaxViT-T_q gains "up to 9.21 % accuracy" (Aircraft 22.32 − 13.11) and
"up to 15.79 % F1" (Aircraft 22.35 − 6.56); ResNet-18_q "up to 5.70 % / 5.53 %" (BUSI).

Keys are ``(dataset, backbone, arm)`` with ``arm`` in ``{"classical", "quantum"}`` and
the registry names used by qhead's presets (``busi``, ``resnet18``, ``maxvit_t``).
Accuracy and macro-F1 are fractions in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperCell:
    """One row of the paper's Tables 3–4.

    Attributes:
        params: Params* (trainable parameters after the backbone).
        accuracy: test accuracy, fraction.
        macro_f1: test macro-averaged F1, fraction.
        table: ``"Table 3"`` (ResNet-18) or ``"Table 4"`` (MaxViT-T).
    """

    params: int
    accuracy: float
    macro_f1: float
    table: str


def _cell(params: int, acc_pct: float, f1_pct: float, table: str) -> PaperCell:
    return PaperCell(params, round(acc_pct / 100.0, 6), round(f1_pct / 100.0, 6), table)


PAPER_DATASETS: tuple[str, ...] = ("croatian-fish", "aircraft737", "busi", "apples-or-tomatoes")
"""Dataset names in the paper's row order."""

PAPER_BACKBONES: tuple[str, ...] = ("resnet18", "maxvit_t")

DATASET_TITLES: dict[str, str] = {
    "croatian-fish": "Croatian Fish",
    "aircraft737": "Aircraft (737)",
    "busi": "BUSI",
    "apples-or-tomatoes": "AOT",
}

BACKBONE_TITLES: dict[str, str] = {"resnet18": "ResNet-18", "maxvit_t": "MaxViT-T"}

PAPER_RESULTS: dict[tuple[str, str, str], PaperCell] = {
    # Table 3: ResNet-18 vs ResNet-18_q
    ("croatian-fish", "resnet18", "classical"): _cell(6156, 91.52, 91.77, "Table 3"),
    ("croatian-fish", "resnet18", "quantum"): _cell(222, 94.55, 94.56, "Table 3"),
    ("aircraft737", "resnet18", "classical"): _cell(4104, 31.46, 31.74, "Table 3"),
    ("aircraft737", "resnet18", "quantum"): _cell(143, 36.33, 36.93, "Table 3"),
    ("busi", "resnet18", "classical"): _cell(1539, 80.38, 79.10, "Table 3"),
    ("busi", "resnet18", "quantum"): _cell(63, 86.08, 84.63, "Table 3"),
    ("apples-or-tomatoes", "resnet18", "classical"): _cell(1026, 82.47, 82.35, "Table 3"),
    ("apples-or-tomatoes", "resnet18", "quantum"): _cell(41, 87.63, 87.52, "Table 3"),
    # Table 4: MaxViT-T vs MaxViT-T_q
    ("croatian-fish", "maxvit_t", "classical"): _cell(269836, 71.52, 68.54, "Table 4"),
    ("croatian-fish", "maxvit_t", "quantum"): _cell(14363, 76.97, 75.15, "Table 4"),
    ("aircraft737", "maxvit_t", "classical"): _cell(267784, 13.11, 6.56, "Table 4"),
    ("aircraft737", "maxvit_t", "quantum"): _cell(12311, 22.32, 22.35, "Table 4"),
    ("busi", "maxvit_t", "classical"): _cell(265219, 78.48, 77.08, "Table 4"),
    ("busi", "maxvit_t", "quantum"): _cell(63, 84.18, 81.97, "Table 4"),
    ("apples-or-tomatoes", "maxvit_t", "classical"): _cell(264706, 84.54, 83.98, "Table 4"),
    ("apples-or-tomatoes", "maxvit_t", "quantum"): _cell(107, 87.63, 87.56, "Table 4"),
}


def paper_cell(dataset: str, backbone: str, arm: str) -> PaperCell | None:
    """The paper's row for a cell, or ``None`` if the paper has none (controls, other data)."""
    return PAPER_RESULTS.get((dataset, backbone, arm))
