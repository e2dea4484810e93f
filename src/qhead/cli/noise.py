"""``qhead noise``: test accuracy / macro-F1 of trained quantum models vs noise strength.

Arguments are checkpoint files or run dirs (as for ``qhead shots``: the ``quantum`` arm's
``last.pt``, else ``best.pt``, of every seed). The backbone features of the test split are
computed once per checkpoint; only the head is re-run at each strength. One-qubit-gate
circuits (Ansatz 1) are evaluated exactly; others by Monte-Carlo trajectories over
``--noise-seeds`` seeds. ``noise.md``, ``noise.csv`` and ``noise.png`` go to ``--out``.

Examples::

    qhead noise runs/busi/resnet18/quantum --channel depolarizing --strengths 0,0.01,0.05,0.1
    qhead noise runs/x/last.pt --channel readout --strengths 0,0.01,0.05,0.1,0.2
    qhead noise runs/x/last.pt --channel bit_flip --strengths 0,0.01 --readout 0.02 \\
        --trajectories 200 --shots 1000 --method trajectories
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from qhead.experiments.noise import CHANNELS

    parser = subparsers.add_parser(
        "noise",
        help="noise study: metrics of quantum checkpoints vs noise strength",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", metavar="RUNS_DIR|CHECKPOINT")
    parser.add_argument("--channel", default="depolarizing", choices=CHANNELS,
                        help="the channel whose strength is varied (default: depolarizing)")
    parser.add_argument("--strengths", default="0,0.001,0.01,0.03,0.1",
                        help="comma list of probabilities (default: 0,0.001,0.01,0.03,0.1)")
    for name in CHANNELS:
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=0.0,
                            dest=f"fixed_{name}", metavar="P",
                            help=f"fixed {name} probability for the other rows (default: 0)")
    parser.add_argument("--on-prepared-state", action="store_true",
                        help="also apply the gate channels once to every wire of the encoded state")
    parser.add_argument("--trajectories", type=int, default=100,
                        help="Monte-Carlo trajectories per evaluation (default: 100)")
    parser.add_argument("--shots", type=int, help="shots per image (default: exact ⟨Z⟩)")
    parser.add_argument("--noise-seeds", type=int, default=3,
                        help="seeds of the trajectory/shot sampler (default: 3; 1 when exact)")
    parser.add_argument("--method", default="auto", choices=("auto", "exact", "trajectories"),
                        help="auto: exact for one-qubit-gate circuits without shots")
    parser.add_argument("--arm", default="quantum", help="arm searched in a runs dir")
    parser.add_argument("--data-root", help="the dataset's root if it moved")
    parser.add_argument("--out", help="output dir (default: <first path>/noise)")
    parser.add_argument("--no-plot", action="store_true")
    return parser


def run(args: argparse.Namespace) -> int:
    from qhead.experiments.noise import (
        CHANNELS,
        compute_test_features,
        noise_study,
        parse_strengths,
        write_noise_report,
    )
    from qhead.experiments.shots import find_checkpoints
    from qhead.simulator.noise import NoiseModel

    strengths = parse_strengths(args.strengths)
    base = NoiseModel(**{c: getattr(args, f"fixed_{c}") for c in CHANNELS},
                      on_prepared_state=args.on_prepared_state)
    checkpoints = find_checkpoints(args.paths, arm=args.arm)
    first = Path(args.paths[0])
    out = Path(args.out) if args.out else (first if first.is_dir() else first.parent) / "noise"
    features = []
    for ckpt in checkpoints:
        tf = compute_test_features(ckpt, data_root=args.data_root)
        print(f"{ckpt}: {len(tf.labels)} test images, features {tuple(tf.features.shape[1:])} "
              f"computed once in {tf.seconds:.1f} s")
        features.append(tf)
    rows = noise_study(features, args.channel, strengths, base=base,
                       trajectories=args.trajectories, shots=args.shots,
                       noise_seeds=args.noise_seeds, method=args.method, echo=print)
    written = write_noise_report(rows, out, plot=not args.no_plot)
    print("wrote", *written, sep="\n  ")
    return 0
