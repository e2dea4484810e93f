"""The paper's 16 presets: every Params* number of SPEC §4, names, datasets."""

from __future__ import annotations

import warnings

import pytest
import torch

from qhead.errors import ConfigError
from qhead.models import (
    DATASET_CLASSES,
    PAPER_PARAMS,
    PRESETS,
    build_backbone,
    build_head,
    count_parameters,
    discover_feature_shape,
    get_preset,
    list_presets,
    preset_dataset,
    resolve_head,
)

# SPEC §4, typed in again from the table (not read from the package).
SPEC_PARAMS = {
    ("croatian-fish", "resnet18"): 6156,
    ("croatian-fish", "resnet18_q"): 222,
    ("croatian-fish", "maxvit_t"): 269836,
    ("croatian-fish", "maxvit_t_q"): 14363,
    ("aircraft737", "resnet18"): 4104,
    ("aircraft737", "resnet18_q"): 143,
    ("aircraft737", "maxvit_t"): 267784,
    ("aircraft737", "maxvit_t_q"): 12311,
    ("busi", "resnet18"): 1539,
    ("busi", "resnet18_q"): 63,
    ("busi", "maxvit_t"): 265219,
    ("busi", "maxvit_t_q"): 63,
    ("apples-or-tomatoes", "resnet18"): 1026,
    ("apples-or-tomatoes", "resnet18_q"): 41,
    ("apples-or-tomatoes", "maxvit_t"): 264706,
    ("apples-or-tomatoes", "maxvit_t_q"): 107,
}


@pytest.fixture(scope="module")
def feature_shapes():
    """Both backbones' maps at 224×224: 512×7×7. The real dry-run shapes are asserted in
    test_forward.py (features_224) and through `qhead params` in test_cli_models.py; a
    MaxViT-T pass at 224 is too slow to repeat here."""
    return {"resnet18": (512, 7, 7), "maxvit_t": (512, 7, 7)}


def test_sixteen_presets_in_paper_order():
    assert len(PRESETS) == 16
    assert list_presets() == list(PAPER_PARAMS)
    assert set(list_presets()) == {f"{arch}/{ds}" for ds, arch in SPEC_PARAMS}
    assert all(PAPER_PARAMS[f"{arch}/{ds}"] == n for (ds, arch), n in SPEC_PARAMS.items())


def test_resnet18_gives_512x7x7_at_224():
    assert discover_feature_shape(build_backbone("resnet18", 224), 224) == (512, 7, 7)


@pytest.mark.parametrize(("dataset", "arch"), list(SPEC_PARAMS))
def test_params_star_matches_spec(feature_shapes, dataset, arch):
    cfg = get_preset(f"{arch}/{dataset}")
    assert cfg.num_classes == DATASET_CLASSES[dataset] and cfg.image_size == 224
    assert cfg.pretrained is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)  # lint of dead angles
        head = build_head(
            resolve_head(cfg), feature_shapes[cfg.backbone], cfg.num_classes, cfg.head_options
        )
    assert count_parameters(head) == SPEC_PARAMS[(dataset, arch)]
    if arch.endswith("_q"):
        assert head.n_qubits == 15
        assert head(torch.randn(1, 512, 7, 7)).shape == (1, cfg.num_classes)


def test_quantum_presets_details():
    aot = get_preset("maxvit_t_q/apples-or-tomatoes").head_options
    assert (aot["ansatz"], aot["layers"], aot["measured_wires"], aot["hidden"]) == (
        "ansatz1",
        3,
        12,
        [4],
    )
    assert get_preset("resnet18_q/croatian-fish").head_options["ansatz"] == "ansatz2"
    assert get_preset("maxvit_t/busi").head == "classical"
    assert resolve_head(get_preset("maxvit_t/busi")) == "maxvit-classical"
    assert resolve_head(get_preset("resnet18/busi")) == "avg-linear"


def test_get_preset_returns_independent_copies_and_aliases():
    a = get_preset("resnet18_q/busi")
    a.head_options["hidden"].append(99)
    assert get_preset("resnet18_q/busi").head_options["hidden"] == []
    assert get_preset("resnet18_q/aot") == get_preset("resnet18_q/apples-or-tomatoes")
    assert preset_dataset("maxvit_t_q/aircraft737") == "aircraft737"
    assert preset_dataset("resnet18/fish") == "croatian-fish"


def test_unknown_preset_lists_allowed():
    with pytest.raises(ConfigError, match=r"unknown preset 'vgg/busi'; allowed: maxvit_t/"):
        get_preset("vgg/busi")
