"""``qhead resources``: qubits, gates, depth, shots and training cost of a quantum head on a
device (state preparation counted from its actual Möttönen decomposition).

Examples::

    qhead resources --preset resnet18_q/busi
    qhead resources --preset resnet18_q/busi model.head_options.ansatz=ansatz2 --json
    qhead resources model.backbone=small_cnn model.head=quantum image_size=32
    qhead resources runs/busi-q/last.pt --shots 100,1000 --shots-per-second 2000
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "resources",
        help="device cost of a quantum head: gates, depth, state preparation, shots, training",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("items", nargs="*", metavar="CHECKPOINT|KEY=VALUE",
                        help="a checkpoint, or config overrides as for qhead train")
    parser.add_argument("--preset", help="a paper preset, e.g. resnet18_q/busi")
    parser.add_argument("--shots", default="10,100,1000,10000",
                        help="comma list of shot counts for the inference table "
                             "(default: the shot study's 10,100,1000,10000)")
    parser.add_argument("--train-images", type=int, default=620,
                        help="training-set size to cost (default: 620, the paper's BUSI split)")
    parser.add_argument("--batch-size", type=int, help="default: the config's (paper: 32)")
    parser.add_argument("--epochs", type=int, help="default: the config's (paper: 200)")
    parser.add_argument("--training-shots", type=int, default=1000,
                        help="shots per circuit when training on a device (default: 1000)")
    parser.add_argument("--shots-per-second", type=float, default=10_000.0,
                        help="assumed shot rate of the device (default: 10000)")
    parser.add_argument("--circuit-overhead-ms", type=float, default=100.0,
                        help="assumed fixed cost per distinct circuit in ms (default: 100)")
    parser.add_argument("--two-qubit-error", type=float, default=1e-3,
                        help="assumed error per CNOT for the fidelity estimate (default: 1e-3)")
    parser.add_argument("--one-qubit-error", type=float, default=1e-4,
                        help="assumed error per one-qubit gate (default: 1e-4)")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    return parser


def run(args: argparse.Namespace) -> int:
    from qhead.errors import ConfigError
    from qhead.experiments.hardware import format_resources, model_resources
    from qhead.experiments.shots import parse_shots
    from qhead.quantum.resources import DeviceAssumptions

    overrides = [i for i in args.items if "=" in i]
    paths = [i for i in args.items if "=" not in i]
    if len(paths) > 1:
        raise ConfigError(f"qhead resources: at most one checkpoint, got {paths}")
    shots = parse_shots(args.shots)
    if None in shots:
        raise ConfigError("--shots: exact expectation values are not available on a device; "
                          "give shot counts only (e.g. 10,100,1000)")
    assumptions = DeviceAssumptions(
        shots_per_second=args.shots_per_second, circuit_overhead_ms=args.circuit_overhead_ms,
        two_qubit_error=args.two_qubit_error, one_qubit_error=args.one_qubit_error,
    )
    resources, info = model_resources(
        preset=args.preset, overrides=overrides, checkpoint=Path(paths[0]) if paths else None,
        shots=shots, train_images=args.train_images, batch_size=args.batch_size,
        epochs=args.epochs, training_shots=args.training_shots, assumptions=assumptions,
    )
    if args.json:
        print(json.dumps({"model": info, **resources.to_dict()}, indent=2))
    else:
        print(format_resources(resources, info))
    return 0
