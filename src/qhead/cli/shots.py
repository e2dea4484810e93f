"""``qhead shots``: test accuracy / macro-F1 of trained quantum models vs number of shots.

Arguments are checkpoint files or run dirs (``qhead reproduce`` output: the ``quantum``
arm's ``last.pt``, else ``best.pt``, of every seed). Each checkpoint is evaluated on its
test split at every shot count with ``--sampling-seeds`` seeds of the shot sampler
(``exact`` once; the backbone runs once per checkpoint, the head once per
evaluation); ``shots.md``, ``shots.csv`` and ``shots.png`` go to ``--out``.

Examples::

    qhead shots runs/busi/resnet18/quantum --shots 10,100,1000,10000,exact --sampling-seeds 3
    qhead shots --merge results/x/seed0-shots results/x/seed2-shots --out results/x/shots
"""

from __future__ import annotations

import argparse
from pathlib import Path

from qhead.errors import ConfigError
from qhead.experiments.shots import (
    CachedEvaluate,
    find_checkpoints,
    merge_shot_studies,
    parse_shots,
    shot_study,
    write_shots_report,
)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "shots",
        help="shot-noise study: metrics of quantum checkpoints vs number of shots",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", metavar="RUNS_DIR|CHECKPOINT",
                        help="run dirs or checkpoints; with --merge, shot studies "
                             "(shots.csv or the folder holding it)")
    parser.add_argument("--merge", action="store_true",
                        help="evaluate nothing: merge existing studies (e.g. committed ones of "
                             "checkpoints not kept) into one report pooled over checkpoints; "
                             "needs --out")
    parser.add_argument("--shots", default="10,100,1000,10000,exact",
                        help="comma list of shot counts and/or 'exact'")
    parser.add_argument("--sampling-seeds", dest="sampling_seeds", type=int, default=3,
                        help="seeds of the shot sampler per shot count (default: 3)")
    parser.add_argument("--arm", default="quantum",
                        help="arm whose run dirs are searched in a runs dir (default: quantum)")
    parser.add_argument("--out", help="output dir (default: <first path>/shots)")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--backend", metavar="pennylane[:DEVICE]",
                        help="sample on PennyLane (default.qubit) or pennylane:<device> "
                             "(default: qhead's simulator)")
    return parser


def run(args: argparse.Namespace) -> int:
    if args.merge:
        if not args.out:
            raise ConfigError("--merge needs --out DIR (where the pooled report goes)")
        rows = merge_shot_studies(args.paths)
        written = write_shots_report(rows, args.out, plot=not args.no_plot)
        print(f"merged {len(rows)} row(s) of {len(args.paths)} stud(ies)")
        print("wrote", *written, sep="\n  ")
        return 0
    shots = parse_shots(args.shots)
    checkpoints = find_checkpoints(args.paths, arm=args.arm)
    first = Path(args.paths[0])
    out = Path(args.out) if args.out else (first if first.is_dir() else first.parent) / "shots"
    print(f"{len(checkpoints)} checkpoint(s) x shots {args.shots} x "
          f"{args.sampling_seeds} sampling seed(s)")
    rows = shot_study(checkpoints, shots, args.sampling_seeds,
                      evaluate=CachedEvaluate(backend=args.backend), echo=print)
    written = write_shots_report(rows, out, plot=not args.no_plot)
    print("wrote", *written, sep="\n  ")
    return 0
