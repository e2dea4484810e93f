"""A model rebuilt from its stored config (asdict → YAML → ModelConfig) + state dict."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch
import yaml

from qhead.models import ModelConfig, build_model

CASES = [
    ("small_cnn", "classical", {}),
    ("small_cnn", "avg-linear", {"hidden": [7], "activation": "gelu"}),
    ("small_cnn", "max-linear", {}),
    ("small_cnn", "flatten-linear", {}),
    ("small_cnn", "maxvit-classical", {"last_bias": False}),
    (
        "small_cnn",
        "quantum",
        {
            "ansatz": "ansatz2",
            "layers": 2,
            "measured_wires": [0, 5, 9],
            "ansatz_options": {"gates": ["RZ", "RY"], "entangler": "ring"},
            "hidden": [6],
        },
    ),
    ("small_cnn", "quantum", {"freeze_circuit": True, "measured_wires": 4}),
    ("small_cnn", "twin", {"measured_wires": 7, "hidden": [5]}),
    ("resnet18", "quantum", {"ansatz": "ansatz1", "ansatz_options": {"gate": "RX"}}),
    pytest.param("maxvit_t", "classical", {}, marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("backbone", "head", "options"), CASES)
def test_rebuild_from_stored_config_and_state_dict(tmp_path, backbone, head, options):
    size = 32 if backbone == "small_cnn" else 64
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        torch.manual_seed(0)
        model = build_model(
            ModelConfig(
                backbone=backbone, head=head, num_classes=3, image_size=size, head_options=options
            )
        )
        # one training step so that the weights (and BatchNorm statistics) are not the init
        model.train()
        x = torch.randn(2, 3, size, size)
        torch.optim.SGD(model.parameters(), lr=0.1).zero_grad()
        model(x).sum().backward()
        torch.optim.SGD(model.parameters(), lr=0.1).step()
        model.eval()
        expected = model(x)
        # a checkpoint as the engine stores it: plain dicts only
        path = tmp_path / "ckpt.pt"
        torch.save(
            {
                "model": model.state_dict(),
                "config": yaml.safe_dump(dataclasses.asdict(model.config)),
            },
            path,
        )
        stored = torch.load(path, weights_only=True)
        torch.manual_seed(123)  # a different init, so equality comes from the state dict
        rebuilt = build_model(ModelConfig.from_dict(yaml.safe_load(stored["config"])))
    assert rebuilt.config == model.config
    rebuilt.load_state_dict(stored["model"])
    rebuilt.eval()
    torch.testing.assert_close(rebuilt(x), expected, rtol=0, atol=0)
    if "freeze_circuit" in options:  # freezing is a property of the config, rebuilt too
        assert not rebuilt.head.circuit.weights.requires_grad
