"""``qhead describe``: one model's feature map, qubits, circuit, parameters and lint.

Examples::

    qhead describe --preset maxvit_t_q/apples-or-tomatoes
    qhead describe --backbone small_cnn --image-size 32 --head quantum \\
        --head-option ansatz=ansatz2 --head-option layers=2
"""

from __future__ import annotations

import argparse
import warnings

from qhead.cli.params import add_model_arguments, model_config_from_args

__all__ = ["register", "run"]


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "describe",
        help="feature-map shape, qubits, circuit drawing, parameter counts and lint of a model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--no-drawing", action="store_true", help="omit the circuit drawing (wide for 15 qubits)"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    import math

    from qhead.models.summary import summarize

    cfg = model_config_from_args(args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)  # printed below, once
        s = summarize(cfg, with_circuit=True)
    c, h, w = s.feature_shape
    title = args.preset or f"{cfg.backbone} + {cfg.head}"
    print(f"model: {title}")
    print(f"  backbone: {cfg.backbone} {cfg.backbone_options or ''}".rstrip())
    print(f"  head: {s.head_name} {cfg.head_options or ''}".rstrip())
    print(f"  classes: {cfg.num_classes}   input: 3x{cfg.image_size}x{cfg.image_size}")
    print(f"  pretrained: {cfg.pretrained or 'none (from scratch)'}")
    print(f"feature map: {c}x{h}x{w} = {math.prod(s.feature_shape):,} values")
    if s.n_qubits is not None:
        wires = s.measured_wires or []
        print(
            f"qubits: {s.n_qubits} (state of {2**s.n_qubits:,} amplitudes, zero-padded from "
            f"{math.prod(s.feature_shape):,}); measured wires: {len(wires)} {wires}"
        )
    if s.twin_of:
        print(f"  twin of: {s.twin_of}")
    print("trainable parameters:")
    print(f"  backbone: {s.backbone_params:,}")
    for part, n in s.parts.items():
        print(f"  head.{part}: {n:,}")
    print(f"  head total (Params*): {s.head_params:,}")
    if s.frozen_params:
        print(f"  frozen (not trained): {s.frozen_params:,}")
    print(f"  whole model: {s.total_params:,}")
    if s.drawing and not args.no_drawing:
        print("circuit:")
        print(s.drawing)
    if s.n_qubits is not None and s.head_name == "quantum":
        if s.lint:
            print("lint warnings:")
            for message in s.lint:
                print(f"  - {message}")
        else:
            print("lint: no findings")
    return 0
