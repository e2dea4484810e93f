"""Every head forward and backward on both paper backbones, at 64×64 and 224×224.

At 64×64 every head runs end to end on ResNet-18, and all heads share one MaxViT-T
pass (one backward for all). At 224×224 each head runs on the backbone's real feature
map (one backbone pass shared by all heads) with the gradient checked down to that map.
Separate end-to-end runs per head (MaxViT-T at 64, both at 224) are marked slow:
MaxViT-T costs seconds per pass on a shared CPU.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from qhead.models import (
    Classifier,
    ModelConfig,
    build_backbone,
    build_head,
    build_model,
    discover_feature_shape,
    resolve_head,
)

BACKBONES = ("resnet18", "maxvit_t")
HEAD_CASES = {
    "classical": {},
    "avg-linear": {},
    "max-linear": {},
    "flatten-linear": {},
    "maxvit-classical": {},
    "quantum": {"ansatz": "ansatz1", "hidden": [8]},
    "quantum-ansatz2": {"ansatz": "ansatz2", "measured_wires": 4},
    "quantum-frozen": {"freeze_circuit": True, "measured_wires": [1, 3]},
    "twin": {"measured_wires": 6, "hidden": [8], "activation": "relu"},
}


def _head_name(case: str) -> str:
    return case.split("-")[0] if case.startswith("quantum") else case


@pytest.fixture(autouse=True)
def _quiet_lint():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        yield


class _LazyBackbones(dict):
    def __missing__(self, name: str) -> torch.nn.Module:
        torch.manual_seed(0)
        self[name] = build_backbone(name, 64)
        return self[name]


@pytest.fixture(scope="module")
def backbones_64():
    """Backbones at 64×64, built on first use and shared by the module's tests."""
    return _LazyBackbones()


def _check_grads(module: torch.nn.Module) -> None:
    grads = [p.grad for p in module.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def _model_at_64(backbone: torch.nn.Module, backbone_name: str, case: str) -> Classifier:
    cfg = ModelConfig(
        backbone=backbone_name,
        head=_head_name(case),
        num_classes=3,
        image_size=64,
        head_options=HEAD_CASES[case],
    )
    shape = discover_feature_shape(backbone, 64)
    head_name = resolve_head(cfg, backbone)
    head = build_head(head_name, shape, 3, cfg.head_options)
    return Classifier(cfg, backbone, head, shape, head_name).train()


@pytest.mark.parametrize("case", list(HEAD_CASES))
def test_head_end_to_end_at_64_resnet18(backbones_64, case):
    backbone = backbones_64["resnet18"]
    backbone.zero_grad(set_to_none=True)
    model = _model_at_64(backbone, "resnet18", case)
    logits = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 2])).backward()
    _check_grads(model.head)
    first = next(model.backbone.parameters())
    assert first.grad is not None and first.grad.abs().sum() > 0  # reaches the first conv
    if case == "quantum-frozen":
        assert model.head.circuit.weights.grad is None


def test_every_head_end_to_end_at_64_maxvit():
    """All heads on one MaxViT-T pass (a backward per head would cost seconds each)."""
    built = build_model(ModelConfig(backbone="maxvit_t", head="quantum", image_size=64))
    assert built.feature_shape == (512, 2, 2) and built.n_qubits == 11
    assert built.backbone.partition_size == 2
    backbone = built.backbone
    models = {case: _model_at_64(backbone, "maxvit_t", case) for case in HEAD_CASES}
    features = built.forward_features(torch.randn(1, 3, 64, 64))
    assert features.shape == (1, 512, 2, 2)
    loss = 0
    for model in models.values():
        logits = model.forward_head(features)
        assert logits.shape == (1, 3) and torch.isfinite(logits).all()
        loss = loss + torch.nn.functional.cross_entropy(logits, torch.tensor([2]))
    loss.backward()
    for model in models.values():
        _check_grads(model.head)
    _check_grads(backbone)


def test_build_model_at_64_resnet18():
    model = build_model(ModelConfig(backbone="resnet18", head="quantum", image_size=64))
    assert model.feature_shape == (512, 2, 2) and model.n_qubits == 11
    features = model.forward_features(torch.randn(1, 3, 64, 64))
    assert features.shape == (1, 512, 2, 2)
    assert model.forward_head(features, pre_logits=True).shape == (1, 11)


@pytest.fixture(scope="module")
def features_224():
    """Each backbone's real feature map of one 224×224 image."""
    torch.manual_seed(0)
    out = {}
    for name in BACKBONES:
        backbone = build_backbone(name, 224).eval()
        with torch.no_grad():
            out[name] = backbone(torch.randn(1, 3, 224, 224))
    return out


@pytest.mark.parametrize("case", list(HEAD_CASES))
@pytest.mark.parametrize("backbone_name", BACKBONES)
def test_head_on_224_feature_map(features_224, backbone_name, case):
    features = features_224[backbone_name].clone().requires_grad_(True)
    assert features.shape == (1, 512, 7, 7)
    cfg = ModelConfig(
        backbone=backbone_name, head=_head_name(case), num_classes=4, head_options=HEAD_CASES[case]
    )
    head = build_head(resolve_head(cfg), (512, 7, 7), 4, cfg.head_options).train()
    if hasattr(head, "n_qubits"):
        assert head.n_qubits == 15
    logits = head(features)
    assert logits.shape == (1, 4) and torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, torch.tensor([1])).backward()
    _check_grads(head)
    assert features.grad is not None and torch.isfinite(features.grad).all()
    assert features.grad.abs().sum() > 0


@pytest.mark.slow
@pytest.mark.parametrize("case", list(HEAD_CASES))
def test_head_end_to_end_at_64_maxvit_separately(backbones_64, case):
    backbone = backbones_64["maxvit_t"]
    backbone.zero_grad(set_to_none=True)
    model = _model_at_64(backbone, "maxvit_t", case)
    logits = model(torch.randn(2, 3, 64, 64))
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 2])).backward()
    _check_grads(model.head)
    _check_grads(model.backbone)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(HEAD_CASES))
@pytest.mark.parametrize("backbone_name", BACKBONES)
def test_head_end_to_end_at_224(backbone_name, case):
    model = build_model(
        ModelConfig(
            backbone=backbone_name,
            head=_head_name(case),
            num_classes=3,
            head_options=HEAD_CASES[case],
        )
    )
    logits = model(torch.randn(1, 3, 224, 224))
    assert logits.shape == (1, 3) and torch.isfinite(logits).all()
    logits.sum().backward()
    _check_grads(model.head)
    _check_grads(model.backbone)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("case", list(HEAD_CASES))
@pytest.mark.parametrize("backbone_name", BACKBONES)
def test_head_end_to_end_on_cuda(backbone_name, case):
    model = build_model(
        ModelConfig(
            backbone=backbone_name,
            head=_head_name(case),
            num_classes=3,
            head_options=HEAD_CASES[case],
        )
    ).cuda()
    x = torch.randn(2, 3, 224, 224, device="cuda")
    logits = model(x)
    assert logits.device.type == "cuda" and logits.shape == (2, 3)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 2], device="cuda")).backward()
    _check_grads(model.head)
    cpu = model.cpu().eval()
    torch.testing.assert_close(cpu(x.cpu()), model.cuda().eval()(x).cpu(), rtol=1e-3, atol=1e-3)
