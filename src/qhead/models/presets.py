"""The paper's 16 model configurations (SPEC §4; the paper's Tables 2–4), by name.

Names are ``<backbone>/<dataset>`` for the classical model and ``<backbone>_q/<dataset>``
for the quantum one, e.g. ``resnet18/busi`` and ``maxvit_t_q/aircraft737``. Datasets:
``croatian-fish`` (12 classes), ``aircraft737`` (8), ``busi`` (3),
``apples-or-tomatoes`` (2). All use 224×224 inputs and no pretrained weights.

The quantum heads (Params* = trainable parameters after the backbone):

=======================  ===============================================  ========
preset                   head                                             Params*
=======================  ===============================================  ========
resnet18_q/croatian-fish Ansatz 2, D=1 (30) + Linear(15, 12)                   222
resnet18_q/aircraft737   Ansatz 1, D=1 (15) + Linear(15, 8)                    143
resnet18_q/busi          Ansatz 1, D=1 + Linear(15, 3)                          63
resnet18_q/apples-or-…   Ansatz 1, D=1, m=12 + Linear(12, 2)                    41
maxvit_t_q/croatian-fish Ansatz 1, D=1 + Linear(15,512)+Tanh+Linear(512,12) 14,363
maxvit_t_q/aircraft737   as above with 8 classes                            12,311
maxvit_t_q/busi          Ansatz 1, D=1 + Linear(15, 3)                          63
maxvit_t_q/apples-or-…   Ansatz 1, D=3, m=12 + Linear(12,4)+Tanh+Linear(4,2)   107
=======================  ===============================================  ========

m=12 and the width 4 for AOT are the only values consistent with the printed counts.
"""

from __future__ import annotations

import copy
from typing import Any

from qhead.dataspec import DATASET_SPECS, PAPER_ARMS, PAPER_BACKBONES, PAPER_DATASETS
from qhead.errors import ConfigError
from qhead.models.config import ModelConfig
from qhead.registry import Registry, UnknownNameError

__all__ = [
    "DATASET_ALIASES",
    "DATASET_CLASSES",
    "PAPER_PARAMS",
    "PRESETS",
    "get_preset",
    "list_presets",
    "preset_dataset",
]

DATASET_CLASSES: dict[str, int] = {n: DATASET_SPECS.get(n).num_classes for n in PAPER_DATASETS}
"""Number of classes of each paper dataset, in the paper's row order (from the specs)."""

DATASET_ALIASES: dict[str, str] = {
    alias: n for n in PAPER_DATASETS for alias in DATASET_SPECS.get(n).aliases
}
"""Short dataset names accepted by :func:`get_preset` (``resnet18_q/aot``)."""

ANSATZ1 = "ansatz1"
ANSATZ2 = "ansatz2"

_QUANTUM_HEADS: dict[tuple[str, str], dict[str, Any]] = {
    ("resnet18", "croatian-fish"): {"ansatz": ANSATZ2, "layers": 1},
    ("resnet18", "aircraft737"): {"ansatz": ANSATZ1, "layers": 1},
    ("resnet18", "busi"): {"ansatz": ANSATZ1, "layers": 1},
    ("resnet18", "apples-or-tomatoes"): {"ansatz": ANSATZ1, "layers": 1, "measured_wires": 12},
    ("maxvit_t", "croatian-fish"): {"ansatz": ANSATZ1, "layers": 1, "hidden": [512]},
    ("maxvit_t", "aircraft737"): {"ansatz": ANSATZ1, "layers": 1, "hidden": [512]},
    ("maxvit_t", "busi"): {"ansatz": ANSATZ1, "layers": 1},
    ("maxvit_t", "apples-or-tomatoes"): {
        "ansatz": ANSATZ1,
        "layers": 3,
        "measured_wires": 12,
        "hidden": [4],
    },
}

PAPER_PARAMS: dict[str, int] = {
    f"{backbone}{'_q' if arm == 'quantum' else ''}/{n}": cell.params
    for n in PAPER_DATASETS
    for backbone in PAPER_BACKBONES
    for arm in PAPER_ARMS
    if (cell := DATASET_SPECS.get(n).paper.get((backbone, arm))) is not None
}
"""Params* printed in the paper's Tables 3–4, by preset name (from the dataset specs)."""

PRESETS: Registry = Registry("preset")
"""Paper presets, name → :class:`ModelConfig` (use :func:`get_preset` for a fresh copy)."""

_DATASET_OF: dict[str, str] = {}


def _quantum_options(opts: dict[str, Any]) -> dict[str, Any]:
    return {"activation": "tanh", "hidden": [], **opts}


for _dataset, _classes in DATASET_CLASSES.items():
    for _backbone, _title in (("resnet18", "ResNet-18"), ("maxvit_t", "MaxViT-T")):
        _classical = f"{_backbone}/{_dataset}"
        _quantum = f"{_backbone}_q/{_dataset}"
        PRESETS.add(
            _classical,
            ModelConfig(backbone=_backbone, head="classical", num_classes=_classes),
            help=f"{_title} + its torchvision head, {_dataset} ({_classes} classes)",
        )
        _q = _quantum_options(_QUANTUM_HEADS[(_backbone, _dataset)])
        PRESETS.add(
            _quantum,
            ModelConfig(backbone=_backbone, head="quantum", num_classes=_classes, head_options=_q),
            help=(
                f"{_title}_q: {_q['ansatz']} D={_q['layers']}, m={_q.get('measured_wires', 15)}, "
                f"hidden={_q['hidden']}, {_dataset} ({_classes} classes)"
            ),
        )
        _DATASET_OF[_classical] = _DATASET_OF[_quantum] = _dataset


def _canonical(name: str) -> str:
    if "/" in name:
        arch, dataset = name.split("/", 1)
        return f"{arch}/{DATASET_ALIASES.get(dataset, dataset)}"
    return name


def get_preset(name: str) -> ModelConfig:
    """A fresh (deep-copied, freely editable) :class:`ModelConfig` of a paper preset.

    Raises:
        ConfigError: unknown preset, listing the allowed names.
    """
    try:
        return copy.deepcopy(PRESETS.get(_canonical(name)))
    except UnknownNameError as error:
        raise ConfigError(f"model preset: {error}") from None


def preset_dataset(name: str) -> str:
    """Dataset key of a preset (``"resnet18_q/busi"`` → ``"busi"``)."""
    get_preset(name)
    return _DATASET_OF[_canonical(name)]


def list_presets() -> list[str]:
    """Preset names in the paper's order (by dataset: ResNet-18, its _q, MaxViT-T, its _q)."""
    return list(PAPER_PARAMS)
