"""The classifier (backbone → head) and its factory :func:`build_model`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from qhead.models.backbones import Backbone, discover_feature_shape, make_backbone
from qhead.models.config import ModelConfig
from qhead.models.heads import CLASSICAL, Head

__all__ = ["Classifier", "backbone_facts", "build_model", "count_parameters", "resolve_head"]


class Classifier(nn.Module):
    """Backbone + head with timm's head API.

    Attributes:
        config: the :class:`ModelConfig` it was built from (enough to rebuild it).
        backbone: ``[B, 3, S, S] -> [B, C, h, w]``.
        head: ``[B, C, h, w] -> [B, num_classes]``.
        feature_shape: ``(C, h, w)`` found by a dry run of the backbone at ``image_size``.
        head_name: the head actually built (``classical`` resolved to a concrete head).
    """

    def __init__(
        self,
        config: ModelConfig,
        backbone: Backbone,
        head: Head,
        feature_shape: tuple[int, int, int],
        head_name: str,
    ) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.head = head
        self.feature_shape = feature_shape
        self.head_name = head_name

    @property
    def num_classes(self) -> int:
        return int(self.head.fc.out_features)

    @property
    def n_qubits(self) -> int | None:
        """Qubits of the amplitude-encoded map for quantum/twin heads, else ``None``."""
        return getattr(self.head, "n_qubits", None)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[B, 3, S, S]`` → unpooled feature map ``[B, C, h, w]``."""
        return self.backbone(x)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Feature map ``[B, C, h, w]`` → logits ``[B, classes]`` (or the pre-logit vector)."""
        return self.head(features, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[B, 3, S, S]`` → logits ``[B, num_classes]``."""
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replaces the head's final Linear (and ``config.num_classes``)."""
        self.head.reset_classifier(num_classes)
        self.config.num_classes = num_classes

    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def extra_repr(self) -> str:
        return f"head={self.head_name!r}, feature_shape={self.feature_shape}"


_BACKBONE_FACTS: dict[str, tuple[tuple[int, int, int], int, str]] = {}


def backbone_facts(cfg: ModelConfig) -> tuple[tuple[int, int, int], int, str]:
    """``(feature_shape, trainable backbone parameters, classical head name)`` of the
    config's backbone, built and dry-run once per backbone, options and image size."""
    key = cfg.backbone_key()
    if key not in _BACKBONE_FACTS:
        backbone = make_backbone(cfg.backbone, cfg.image_size, cfg.backbone_options)
        shape = discover_feature_shape(backbone, cfg.image_size, cache_key=key)
        _BACKBONE_FACTS[key] = (shape, count_parameters(backbone), backbone.classical_head)
    return _BACKBONE_FACTS[key]


def resolve_head(cfg: ModelConfig, backbone: Backbone | None = None) -> str:
    """The concrete head name: ``classical`` → the backbone's ``classical_head``.

    Args:
        cfg: the model config.
        backbone: the built backbone; without it, ``classical`` is resolved from
            :func:`backbone_facts` (the config's backbone, built once and cached).
    """
    spec = cfg.head_spec()
    if spec.name != CLASSICAL:
        return spec.name
    own = backbone.classical_head if backbone is not None else backbone_facts(cfg)[2]
    return spec.resolve(own).name


def build_model(cfg: ModelConfig | dict[str, Any]) -> Classifier:
    """Builds the classifier a config describes (on CPU, float32, in training mode).

    The backbone is built without weights (or with ``cfg.pretrained`` from a local
    file), run once on a black ``image_size`` image to find the feature-map shape, and
    the head is built for that shape (for quantum heads: n = ceil(log2(C·h·w)) qubits).

    Args:
        cfg: a :class:`ModelConfig` or a plain dict of its fields.

    Raises:
        ConfigError: for any bad value, naming the field and the allowed values (unknown
            names, m larger than the qubit count, a map too large for the simulator, an
            image size the backbone cannot take, a missing weights file).
    """
    if isinstance(cfg, dict):
        cfg = ModelConfig.from_dict(cfg)
    spec = cfg.head_spec()  # checked at construction (again only if cfg changed since)
    backbone = make_backbone(cfg.backbone, cfg.image_size, cfg.backbone_options)
    if cfg.pretrained is not None:
        backbone.load_weights_file(cfg.pretrained)
    shape = discover_feature_shape(backbone, cfg.image_size, cache_key=cfg.backbone_key())
    spec = spec.resolve(backbone.classical_head)
    head = spec.build(shape, cfg.num_classes)
    return Classifier(cfg, backbone, head, shape, spec.name)


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of parameters of ``module`` (only those with ``requires_grad`` by default).

    Params* of the paper is ``count_parameters(model.head)``: the trainable parameters
    after the backbone.
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
