"""The one ``key=value`` parser (qhead.overrides) and the entry points that use it."""

from __future__ import annotations

import argparse

import pytest

from qhead.errors import ConfigError
from qhead.overrides import flatten, format_override, nest, parse_override, parse_overrides


def test_values_are_yaml_typed_with_exponent_floats_and_dates_as_text() -> None:
    parsed = parse_overrides(["epochs=5", "lr=1e-3", "x=2E5", "flag=true", "none=null",
                              "empty=", "list=[4,8,8]", "day=2026-01-01", "path=/a/[b",
                              "s=abc"])
    assert parsed == {"epochs": 5, "lr": 0.001, "x": 200000.0, "flag": True, "none": None,
                      "empty": None, "list": [4, 8, 8], "day": "2026-01-01",
                      "path": "/a/[b", "s": "abc"}  # invalid YAML stays the text typed
    assert isinstance(parsed["lr"], float) and isinstance(parsed["epochs"], int)


def test_errors_name_the_item_and_where_it_came_from() -> None:
    with pytest.raises(ConfigError, match=r"--head-option 'layers': expected KEY=VALUE"):
        parse_override("layers", what="--head-option")
    with pytest.raises(ConfigError, match=r"override '=5': expected KEY=VALUE"):
        parse_overrides(["=5"])


def test_nest_flatten_and_format_are_inverses() -> None:
    flat = {"model.head_options.layers": 2, "model.head": "quantum", "epochs": 3}
    assert nest(flat) == {"model": {"head_options": {"layers": 2}, "head": "quantum"},
                          "epochs": 3}
    assert flatten(nest(flat)) == flat
    items = [format_override(k, v) for k, v in {"a.b": [1, 2], "c": 1e-3, "d": "x"}.items()]
    assert parse_overrides(items) == {"a.b": [1, 2], "c": 0.001, "d": "x"}


def test_every_entry_point_reads_values_the_same_way(tmp_path) -> None:
    """train overrides, evaluate's --data, and --head-option all go through one parser:
    the same text gives the same value (``1e-3`` a float, not the string YAML 1.1 gives)."""
    from qhead.cli.params import model_config_from_args
    from qhead.engine import load_config

    cfg = load_config(overrides=["lr=1e-3", "model.head=quantum",
                                 "model.head_options.ansatz=ansatz1"])
    assert cfg.lr == 0.001
    args = argparse.Namespace(preset=None, config=None, backbone="small_cnn", head="quantum",
                              num_classes=None, image_size=32, pretrained=None,
                              head_option=["layers=2"], backbone_option=["channels=[4,8,8]"])
    model = model_config_from_args(args)
    assert model.backbone_options["channels"] == [4, 8, 8]
    assert model.to_dict()["head_options"]["layers"] == 2
