"""Users register their own backbone and head (the example of docs/models.md)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qhead.errors import ConfigError
from qhead.models import BACKBONES, HEADS, Backbone, ModelConfig, build_model, count_parameters
from qhead.models.heads import Head


@pytest.fixture
def scratch_registries(monkeypatch):
    """Registrations made by a test disappear after it."""
    for registry in (BACKBONES, HEADS):
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
        monkeypatch.setattr(registry, "_help", dict(registry._help))


def test_register_backbone_and_head_then_build(scratch_registries):
    @BACKBONES.register("tiny")
    def tiny(image_size: int, width: int = 8) -> Backbone:
        """A one-conv backbone."""

        class Tiny(Backbone):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, width, 3, stride=4)

            def forward(self, x):
                return self.conv(x)

        return Tiny()

    @HEADS.register("gap-mlp")
    def gap_mlp(feature_shape, num_classes, width: int = 32) -> Head:
        """GAP + a two-layer MLP."""
        head = Head()
        head.pre = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(feature_shape[0], width), nn.ReLU()
        )
        head.fc = nn.Linear(width, num_classes)
        return head

    cfg = ModelConfig(
        backbone="tiny",
        head="gap-mlp",
        image_size=33,
        num_classes=4,
        backbone_options={"width": 6},
        head_options={"width": 5},
    )
    model = build_model(cfg)
    assert model.feature_shape == (6, 8, 8)
    assert count_parameters(model.head) == 6 * 5 + 5 + 5 * 4 + 4
    assert model(torch.randn(2, 3, 33, 33)).shape == (2, 4)
    assert model.head_name == "gap-mlp"
    assert resolve_classical(cfg) == "avg-linear"  # default of Backbone.classical_head
    with pytest.raises(ConfigError, match=r"unknown option\(s\) depth; allowed: width"):
        ModelConfig(backbone="tiny", head="gap-mlp", head_options={"depth": 2})
    assert HEADS.describe("gap-mlp") == "GAP + a two-layer MLP."


def resolve_classical(cfg: ModelConfig) -> str:
    cfg = ModelConfig(**{**cfg.to_dict(), "head": "classical", "head_options": {}})
    return build_model(cfg).head_name


def test_listing_help_is_the_whole_first_sentence_and_names_classical(capsys):
    from qhead.cli import main
    from qhead.registry import one_line_help

    doc = """Summary that wraps
    onto a second line. More detail.

    Args: ..."""
    assert one_line_help(doc) == "Summary that wraps onto a second line."
    assert one_line_help("") == ""
    assert main(["list", "heads"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.split()[:1] == ["classical"] for line in lines)
