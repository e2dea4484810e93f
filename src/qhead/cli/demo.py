"""``qhead demo``: train a classical and a quantum head on digits and compare (what
``make demo`` runs; about a minute on 2 CPU cores)."""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo",
        help="train a classical and a quantum head on the embedded digits data and compare",
        description=(
            "Trains small_cnn + classical head and small_cnn + AE-VQC head on the embedded "
            "digits data (32x32) with the same seed and budget, prints a table (head, "
            "params after backbone, accuracy, macro-F1, seconds, precision) and writes learning "
            "curves to OUT/curves.png and each run to OUT/<head>/."
        ),
    )
    parser.add_argument("--out", default="runs/demo", help="output folder (replaced)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for PyTorch (default 1: fastest for this small model)")
    parser.add_argument("--amp", choices=("auto", "off", "bf16"), default="auto",
                        help="precision (default auto: bf16 autocast where the CPU has native "
                             "bf16, float32 elsewhere; off: float32 everywhere)")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def run(args: argparse.Namespace) -> int:
    from qhead.engine.demo import format_table, run_demo
    from qhead.engine.record import BEST_CHECKPOINT

    rows = run_demo(args.out, epochs=args.epochs, image_size=args.image_size, seed=args.seed,
                    threads=args.threads, progress=not args.no_progress,
                    overrides=[f"amp={args.amp}"])
    print()
    precisions = sorted({r.precision for r in rows})
    print(f"precision: {', '.join(precisions)} (amp={args.amp}; bf16 and float32 give "
          "different figures)")
    print(format_table(rows))
    print(f"\nlearning curves: {args.out}/curves.png; runs: "
          + ", ".join(str(r.run_dir) for r in rows))
    print("next: qhead evaluate " + str(rows[-1].run_dir / BEST_CHECKPOINT))
    return 0
