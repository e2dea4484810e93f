"""ModelConfig: validation at construction, OmegaConf and dict/YAML round trips."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from omegaconf import OmegaConf

from qhead.errors import ConfigError
from qhead.models import ModelConfig, build_model


def test_defaults_are_the_paper_resnet18_quantum_model():
    cfg = ModelConfig()
    assert (cfg.backbone, cfg.head, cfg.num_classes, cfg.image_size) == (
        "resnet18",
        "quantum",
        2,
        224,
    )
    assert cfg.pretrained is None and cfg.head_options == {} and cfg.backbone_options == {}


def test_omegaconf_structured_merge_with_dotted_overrides():
    base = OmegaConf.structured(ModelConfig)
    merged = OmegaConf.merge(
        base,
        OmegaConf.from_dotlist(
            [
                "head=twin",
                "num_classes=3",
                "head_options.measured_wires=12",
                "head_options.hidden=[4]",
            ]
        ),
    )
    cfg = OmegaConf.to_object(merged)
    assert isinstance(cfg, ModelConfig)
    assert cfg.head == "twin" and cfg.num_classes == 3
    assert cfg.head_options == {"measured_wires": 12, "hidden": [4]}
    assert type(cfg.head_options["hidden"]) is list  # plain containers, not ListConfig


def test_omegaconf_rejects_bad_type_and_validation_runs_on_to_object():
    base = OmegaConf.structured(ModelConfig)
    with pytest.raises(Exception, match=r"num_classes"):
        OmegaConf.merge(base, OmegaConf.from_dotlist(["num_classes=many"]))
    merged = OmegaConf.merge(base, OmegaConf.from_dotlist(["head=nope"]))
    with pytest.raises(ConfigError, match=r"model.head"):
        OmegaConf.to_object(merged)


def test_yaml_round_trip_equals():
    cfg = ModelConfig(
        backbone="maxvit_t",
        head="quantum",
        num_classes=12,
        backbone_options={"partition_size": 7},
        head_options={"ansatz": "ansatz2", "measured_wires": [0, 3], "hidden": [8]},
    )
    text = yaml.safe_dump(dataclasses.asdict(cfg))
    assert ModelConfig.from_dict(yaml.safe_load(text)) == cfg


@pytest.mark.parametrize(
    ("kwargs", "field", "allowed"),
    [
        ({"head": "transformer"}, "model.head", "quantum"),
        ({"backbone": "vgg16"}, "model.backbone", "resnet18"),
        ({"num_classes": 1}, "model.num_classes", ">= 2"),
        ({"num_classes": True}, "model.num_classes", ">= 2"),
        ({"image_size": 0}, "model.image_size", ">= 8"),
        ({"pretrained": ""}, "model.pretrained", "local file"),
        ({"head_options": {"ansatz": "ansatz9"}}, "model.head_options.ansatz", "ansatz1"),
        ({"head_options": {"layers": 0}}, "model.head_options.layers", ">= 1"),
        ({"head_options": {"activation": "swish"}}, "model.head_options.activation", "tanh"),
        ({"head_options": {"hidden": 512}}, "model.head_options.hidden", "[512]"),
        ({"head_options": {"hidden": [0]}}, "model.head_options.hidden", "positive"),
        ({"head_options": {"shots": 0}}, "model.head_options.shots", "null"),
        ({"head_options": {"freeze_circuit": "yes"}}, "model.head_options.freeze_circuit", "true"),
        ({"head_options": {"measured_wires": 0}}, "model.head_options.measured_wires", "positive"),
        ({"head_options": {"wires": 3}}, "model.head_options", "measured_wires"),
        (
            {"head": "avg-linear", "head_options": {"ansatz": "ansatz1"}},
            "model.head_options",
            "hidden",
        ),
        (
            {"backbone": "small_cnn", "backbone_options": {"depth": 3}},
            "backbone_options",
            "channels",
        ),
        ({"backbone": "timm"}, "model.backbone_options.model_name", "timm model name"),
    ],
)
def test_bad_values_fail_at_construction_naming_field_and_allowed(kwargs, field, allowed):
    with pytest.raises(ConfigError) as info:
        ModelConfig(**kwargs)
    assert field in str(info.value)
    assert allowed in str(info.value)


def test_from_dict_rejects_unknown_keys_listing_allowed():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) depth; allowed: backbone, head"):
        ModelConfig.from_dict({"backbone": "resnet18", "depth": 18})


def test_timm_backbone_without_timm_is_a_clear_error(monkeypatch):
    import qhead.models.backbones as backbones

    monkeypatch.setattr(backbones, "_timm_available", lambda: False)
    with pytest.raises(ConfigError, match=r"needs the timm package"):
        ModelConfig(backbone="timm:resnet18")


def test_classical_head_rejects_options_at_construction():
    with pytest.raises(ConfigError, match=r"'classical' .* takes no options.*avg-linear"):
        ModelConfig(backbone="small_cnn", head="classical", head_options={"hidden": [4]})


def test_build_model_accepts_plain_dict():
    model = build_model({"backbone": "small_cnn", "head": "avg-linear", "image_size": 32})
    assert model.config == ModelConfig(backbone="small_cnn", head="avg-linear", image_size=32)


def test_too_many_qubits_and_too_many_wires_fail_at_build_model():
    # small_cnn at 32x32: 64x4x4 = 1024 values -> 10 qubits
    with pytest.raises(ConfigError, match=r"max_qubits: the feature map 64x4x4 .* needs 10 qubits"):
        build_model(
            ModelConfig(backbone="small_cnn", image_size=32, head_options={"max_qubits": 8})
        )
    with pytest.raises(ConfigError, match=r"measured_wires: m=11 .* 10 qubits; allowed: 1..10"):
        build_model(
            ModelConfig(backbone="small_cnn", image_size=32, head_options={"measured_wires": 11})
        )
    with pytest.raises(ConfigError, match=r"measured_wires: m=11 .* 10 qubits"):
        build_model(
            ModelConfig(
                backbone="small_cnn",
                image_size=32,
                head="twin",
                head_options={"measured_wires": 11},
            )
        )


def test_fields_changed_after_construction_are_checked_again_without_rebuilding_the_head(
    monkeypatch,
):
    """The engine sets image_size/num_classes from the data: checked again, cheaply."""
    import qhead.quantum.options as options

    calls = []
    original = options.build_ansatz

    def counted(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(options, "build_ansatz", counted)
    cfg = ModelConfig(backbone="small_cnn", image_size=16, head="quantum")
    cfg.image_size, cfg.num_classes = 32, 5
    model = build_model(cfg)
    assert model.num_classes == 5 and model.n_qubits == 10 and len(calls) == 1
    cfg.num_classes = 1
    with pytest.raises(ConfigError, match=r"model\.num_classes: expected an integer >= 2"):
        build_model(cfg)
    assert len(calls) == 1
