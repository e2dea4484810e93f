"""Models: backbones, heads (classical, quantum, controls), the paper presets.

Public API::

    from qhead.models import ModelConfig, build_model, get_preset, count_parameters

    model = build_model(get_preset("resnet18_q/busi"))   # ResNet-18 + AE-VQC head
    logits = model(images)                               # [B, 3, 224, 224] -> [B, 3]
    count_parameters(model.head)                         # Params* = 63

Registries (listed by ``qhead list``): :data:`BACKBONES`, :data:`HEADS`,
:data:`PRESETS`. See ``docs/models.md``.
"""

from qhead.models.backbones import (
    BACKBONES,
    Backbone,
    build_backbone,
    discover_feature_shape,
    load_local_weights,
)
from qhead.models.classifier import Classifier, build_model, count_parameters, resolve_head
from qhead.models.config import ModelConfig
from qhead.models.heads import (
    ACTIVATIONS,
    CLASSICAL,
    HEADS,
    Head,
    HeadSpec,
    QuantumHead,
    TwinHead,
    build_head,
    encoded_zx,
    validate_head,
)
from qhead.models.presets import (
    DATASET_CLASSES,
    PAPER_PARAMS,
    PRESETS,
    get_preset,
    list_presets,
    preset_dataset,
)

__all__ = [
    "ACTIVATIONS",
    "BACKBONES",
    "CLASSICAL",
    "DATASET_CLASSES",
    "HEADS",
    "PAPER_PARAMS",
    "PRESETS",
    "Backbone",
    "Classifier",
    "Head",
    "HeadSpec",
    "ModelConfig",
    "QuantumHead",
    "TwinHead",
    "build_backbone",
    "build_head",
    "build_model",
    "count_parameters",
    "discover_feature_shape",
    "encoded_zx",
    "get_preset",
    "list_presets",
    "load_local_weights",
    "preset_dataset",
    "resolve_head",
    "validate_head",
]
