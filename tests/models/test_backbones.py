"""Backbones: feature-map shapes by dry run, MaxViT sizes, timm, local weights only."""

from __future__ import annotations

import pytest
import torch
import torchvision

from qhead.errors import ConfigError
from qhead.models import BACKBONES, ModelConfig, build_backbone, build_model, discover_feature_shape
from qhead.models.backbones import maxvit_block_input_sizes, maxvit_partition_size


def test_registry_lists_the_documented_backbones():
    assert {"resnet18", "maxvit_t", "small_cnn", "timm"} <= set(BACKBONES.names())


@pytest.mark.parametrize(
    ("name", "size", "shape"),
    [
        ("resnet18", 64, (512, 2, 2)),
        ("resnet18", 96, (512, 3, 3)),
        ("small_cnn", 32, (64, 4, 4)),
        ("small_cnn", 8, (64, 1, 1)),
    ],
)
def test_feature_shape_by_dry_run(name, size, shape):
    backbone = build_backbone(name, size)
    backbone.train()
    assert discover_feature_shape(backbone, size) == shape
    assert backbone.training  # mode restored after the eval-mode dry run
    with torch.no_grad():
        assert backbone(torch.randn(2, 3, size, size)).shape == (2, *shape)


def test_resnet18_matches_torchvision_features_exactly():
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).eval()
    backbone = build_backbone("resnet18", 64).eval()
    backbone.load_state_dict(
        {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    )
    x = torch.randn(2, 3, 64, 64)
    body = torch.nn.Sequential(*list(reference.children())[:-2])
    torch.testing.assert_close(backbone(x), body(x), rtol=0, atol=0)


def test_maxvit_partition_size_follows_image_size():
    assert maxvit_block_input_sizes(224) == [56, 28, 14, 7]
    assert maxvit_partition_size(224) == 7  # torchvision's maxvit_t
    assert maxvit_partition_size(448) == 7
    assert maxvit_partition_size(64) == 2  # grids 16, 8, 4, 2
    assert maxvit_partition_size(96) == 3  # grids 24, 12, 6, 3
    assert maxvit_partition_size(64, 1) == 1
    # the built network uses it, and torchvision accepts it (it checks divisibility too)
    assert build_backbone("maxvit_t", 96).partition_size == 3


def test_maxvit_bad_sizes_are_config_errors():
    with pytest.raises(ConfigError, match=r"model.image_size: maxvit_t cannot run at 40x40.*32"):
        build_backbone("maxvit_t", 40)
    with pytest.raises(ConfigError, match=r"partition_size: 7 does not divide.*allowed: \[1, 2\]"):
        build_backbone("maxvit_t", 64, {"partition_size": 7})


def test_image_too_small_for_backbone_is_config_error():
    with pytest.raises(ConfigError, match=r"model.image_size"):
        build_model(
            ModelConfig(
                backbone="small_cnn",
                image_size=8,
                head="avg-linear",
                backbone_options={"channels": [4, 4, 4, 4]},
            )
        )


def test_timm_backbone_cnn_and_vit_tokens():
    pytest.importorskip("timm")
    cnn = build_model(ModelConfig(backbone="timm:test_convnext", head="avg-linear", image_size=64))
    assert cnn.feature_shape == (64, 2, 2)
    same = build_model(
        ModelConfig(
            backbone="timm",
            backbone_options={"model_name": "test_convnext"},
            head="avg-linear",
            image_size=64,
        )
    )
    assert same.feature_shape == cnn.feature_shape
    vit = build_model(ModelConfig(backbone="timm:test_vit", head="quantum", image_size=64))
    c, _n_tokens, one = vit.feature_shape  # [B, N, C] tokens become [B, C, N, 1]
    assert one == 1 and c == 64
    out = vit(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 2) and torch.isfinite(out).all()
    with pytest.raises(ConfigError, match=r"timm has no model 'no_such_net'"):
        build_model(ModelConfig(backbone="timm:no_such_net", head="avg-linear"))


def _torchvision_resnet18_file(tmp_path, wrap: bool):
    torch.manual_seed(3)
    net = torchvision.models.resnet18(weights=None)
    state = net.state_dict()
    if wrap:  # a training checkpoint of a DDP model
        state = {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    return path, net


@pytest.mark.parametrize("wrap", [False, True])
def test_pretrained_from_local_torchvision_file(tmp_path, wrap):
    path, net = _torchvision_resnet18_file(tmp_path, wrap)
    model = build_model(
        ModelConfig(backbone="resnet18", head="classical", image_size=64, pretrained=str(path))
    )
    torch.testing.assert_close(model.backbone.conv1.weight, net.conv1.weight, rtol=0, atol=0)
    torch.testing.assert_close(
        model.backbone.layer4[1].bn2.running_var, net.layer4[1].bn2.running_var
    )


def test_pretrained_missing_or_mismatched_file_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"model.pretrained: no such file.*never downloads"):
        build_model(
            ModelConfig(backbone="small_cnn", image_size=32, pretrained=str(tmp_path / "x.pt"))
        )
    wrong = tmp_path / "cnn.pt"
    torch.save(build_backbone("small_cnn", 32).state_dict(), wrong)
    with pytest.raises(ConfigError, match=r"does not fit the backbone: missing"):
        build_model(
            ModelConfig(
                backbone="resnet18", image_size=64, head="avg-linear", pretrained=str(wrong)
            )
        )
    narrow = tmp_path / "narrow.pt"
    torch.save(build_backbone("small_cnn", 32, {"channels": [8, 8, 8]}).state_dict(), narrow)
    with pytest.raises(ConfigError, match=r"does not fit the backbone: .*size mismatch"):
        build_model(
            ModelConfig(
                backbone="small_cnn", image_size=32, head="avg-linear", pretrained=str(narrow)
            )
        )
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=r"cannot read"):
        build_model(ModelConfig(backbone="small_cnn", image_size=32, pretrained=str(garbage)))
