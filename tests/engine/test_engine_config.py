"""TrainConfig: paper defaults, preset/YAML/override precedence, clear errors."""

from __future__ import annotations

import pytest
import yaml

from qhead.engine import TrainConfig, config_from_dict, config_to_dict, load_config
from qhead.errors import ConfigError


def test_defaults_are_the_paper_protocol() -> None:
    cfg = TrainConfig()
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.optimizer) == (200, 32, 1e-3, "adam")
    assert cfg.model.image_size == cfg.data.image_size == 224
    assert cfg.scheduler == "none" and cfg.weight_decay == 0.0


def test_preset_sets_model_and_dataset() -> None:
    cfg = load_config(preset="resnet18_q/busi")
    assert cfg.model.backbone == "resnet18" and cfg.model.head == "quantum"
    assert cfg.model.num_classes == 3 and cfg.data.name == "busi"
    assert cfg.preset == "resnet18_q/busi"


def test_precedence_defaults_preset_file_overrides(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "preset": "resnet18_q/apples-or-tomatoes",
        "epochs": 7, "lr": 0.01,
        "model": {"head_options": {"layers": 2}},
    }))
    cfg = load_config(path, overrides=["lr=0.5", "model.head_options.hidden=[4]", "image_size=64"])
    assert cfg.epochs == 7  # file over default
    assert cfg.lr == 0.5  # override over file
    assert cfg.model.head_options["layers"] == 2  # file over preset
    assert cfg.model.head_options["measured_wires"] == 12  # from the preset, kept
    assert cfg.model.head_options["hidden"] == [4]
    assert cfg.model.image_size == cfg.data.image_size == 64
    assert cfg.data.name == "apples-or-tomatoes"


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("foo=1", "unknown config key 'foo'"),
        ("model.colour=red", "unknown config key 'model.colour'"),
        ("data.nme=x", "unknown config key 'data.nme'"),
        ("epochs=many", "'epochs'"),
        ("optimizer=rmsprop", "optimizer: 'rmsprop' is not allowed; allowed: adam, adamw, sgd"),
        ("amp=fp8", "amp: 'fp8' is not allowed"),
        ("batch_size=0", "batch_size: expected an integer >= 1"),
        ("device=tpu", "device: expected auto, cpu, cuda"),
        ("data.image_size=32", "set image_size=<pixels> to set both"),
        ("model.head_options.layers=0", "model.head_options.layers"),
        ("epochs", "expected KEY=VALUE"),
    ],
)
def test_bad_values_name_the_key(override: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[override])
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_key_lists_allowed_keys() -> None:
    with pytest.raises(ConfigError, match=r"allowed: .*epochs"):
        load_config(overrides=["epoch=3"])


def test_unknown_preset_lists_presets() -> None:
    with pytest.raises(ConfigError, match="resnet18_q/busi"):
        load_config(preset="resnet99/busi")


def test_missing_config_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_round_trip_through_plain_dict_and_yaml() -> None:
    cfg = load_config(preset="maxvit_t_q/aot", overrides=["epochs=3", "seed=4"])
    plain = config_to_dict(cfg)
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(plain))) == cfg


def test_on_off_switches_survive_yaml_booleans(tmp_path) -> None:
    cfg = load_config(overrides=["amp=off", "channels_last=on"])
    assert (cfg.amp, cfg.channels_last) == ("off", "on")
    path = tmp_path / "c.yaml"
    path.write_text("amp: off\nchannels_last: off\n")
    cfg = load_config(path)
    assert (cfg.amp, cfg.channels_last) == ("off", "off")
    assert load_config(overrides=["amp=bf16"]).amp == "bf16"


def test_resume_conflicts_name_what_a_resume_may_not_change() -> None:
    """A run dir written by the code of 84a2461 resumes with its own config (nothing
    refused), with more epochs or a moved data root; another head or lr is named."""
    from pathlib import Path

    from qhead.engine.config import resume_conflicts

    saved = yaml.safe_load((Path(__file__).parent / "data/run-84a2461/config.yaml").read_text())
    assert resume_conflicts(saved, load_config(base=saved)) == []
    moved = load_config(base=saved, overrides=["epochs=50", "data.root=/elsewhere", "threads=3"])
    assert resume_conflicts(saved, moved) == []
    changed = load_config(base=saved, overrides=["model.head=twin", "lr=0.5"])
    assert sorted(resume_conflicts(saved, changed)) == [
        f"lr: {saved['lr']!r} -> 0.5", f"model.head: {saved['model']['head']!r} -> 'twin'"]
