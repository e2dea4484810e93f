"""``qhead params``: trainable parameters after the backbone (Params*) and of the whole model.

Without model arguments it prints every paper preset beside the paper's number; with
``--preset NAME``, ``-c config.yaml`` or ``--backbone/--head/...`` it prints that model.
The model arguments defined here are shared with ``qhead describe``.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

from qhead.errors import ConfigError, MissingFileError
from qhead.overrides import parse_override, set_nested

__all__ = ["add_model_arguments", "model_config_from_args", "register", "run"]


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the options that describe one model (preset, config file, or fields)."""
    group = parser.add_argument_group("model (start from a preset or config file, then override)")
    group.add_argument("--preset", help="a paper preset, e.g. resnet18_q/busi (see `qhead list`)")
    group.add_argument(
        "-c",
        "--config",
        type=Path,
        help="YAML file with ModelConfig fields, or a run config with a `model:` section",
    )
    group.add_argument("--backbone", help="backbone name (resnet18, maxvit_t, small_cnn, timm:…)")
    group.add_argument("--head", help="head name (classical, quantum, twin, avg-linear, …)")
    group.add_argument("--num-classes", type=int, help="number of classes")
    group.add_argument("--image-size", type=int, help="input side in pixels")
    group.add_argument("--pretrained", help="local backbone weights file")
    group.add_argument(
        "--head-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="head option, YAML value, repeatable (e.g. measured_wires=12, hidden=[4])",
    )
    group.add_argument(
        "--backbone-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="backbone option, YAML value, repeatable (e.g. partition_size=4)",
    )


def _load_config_file(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise MissingFileError(f"no such config file: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        data = data["model"]
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of ModelConfig fields")
    return data


def has_model_arguments(args: argparse.Namespace) -> bool:
    """Whether any model-describing option was given."""
    return any(
        getattr(args, name, None) not in (None, [])
        for name in (
            "preset",
            "config",
            "backbone",
            "head",
            "num_classes",
            "image_size",
            "pretrained",
            "head_option",
            "backbone_option",
        )
    )


def model_config_from_args(args: argparse.Namespace):
    """The :class:`~qhead.models.ModelConfig` the options describe.

    Starts from ``--preset`` (or ``-c`` file, or the defaults), then applies the field
    options and the ``--*-option`` overrides in order.

    Raises:
        ConfigError: bad value, unknown preset/name/key.
    """
    from qhead.models import ModelConfig, get_preset

    if args.preset and args.config:
        raise ConfigError("give either --preset or -c/--config, not both")
    if args.preset:
        data = get_preset(args.preset).to_dict()
    elif args.config:
        data = ModelConfig.from_dict(_load_config_file(args.config)).to_dict()
    else:
        data = ModelConfig().to_dict()
    for attr, key in (
        ("backbone", "backbone"),
        ("head", "head"),
        ("num_classes", "num_classes"),
        ("image_size", "image_size"),
        ("pretrained", "pretrained"),
    ):
        value = getattr(args, attr, None)
        if value is not None:
            data[key] = value
    for flag, items, target in (("--head-option", args.head_option, data["head_options"]),
                                ("--backbone-option", args.backbone_option,
                                 data["backbone_options"])):
        for text in items:
            key, value = parse_override(text, what=flag, example="(e.g. layers=2)")
            set_nested(target, key, value)
    return ModelConfig.from_dict(data)


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "params",
        help="trainable parameters after the backbone (Params*) for presets or a model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_arguments(parser)
    return parser


def _fmt(n: int | None) -> str:
    return "" if n is None else f"{n:,}"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        cells = [
            str(c).rjust(w) if i >= 2 else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from qhead.models import PAPER_PARAMS, get_preset, list_presets
    from qhead.models.summary import summarize

    header = ["model", "head", "classes", "qubits", "Params*", "paper", "backbone", "total"]
    rows: list[list[str]] = []
    mismatches = 0
    if has_model_arguments(args):
        cfg = model_config_from_args(args)
        name = args.preset or "(model)"
        items = [(name, cfg)]
    else:
        items = [(name, get_preset(name)) for name in list_presets()]
    for name, cfg in items:
        with warnings.catch_warnings():
            # lint findings are for `qhead describe`; here they would bury the table
            warnings.simplefilter("ignore", category=UserWarning)
            s = summarize(cfg)
        paper = PAPER_PARAMS.get(name) if name == args.preset or not args.preset else None
        if name in PAPER_PARAMS and has_model_arguments(args) and name == args.preset:
            # overrides on top of a preset make it another model than the paper's
            changed = cfg.to_dict() != get_preset(name).to_dict()
            paper = None if changed else paper
        if paper is not None and paper != s.head_params:
            mismatches += 1
        rows.append(
            [
                name,
                s.head_name if s.frozen_params == 0 else f"{s.head_name} (frozen circuit)",
                str(cfg.num_classes),
                "" if s.n_qubits is None else str(s.n_qubits),
                _fmt(s.head_params),
                _fmt(paper),
                _fmt(s.backbone_params),
                _fmt(s.total_params),
            ]
        )
    print(_table(rows, header))
    print(
        "\nParams* = trainable parameters after the backbone (the paper's Tables 3-4); "
        "backbone/total = trainable parameters."
    )
    if mismatches:
        print(f"{mismatches} model(s) differ from the paper's Params*")
        return 1
    return 0
