"""``qhead export-records RUNS_DIR... --out DIR``: the committable record of finished runs.

Copies each finished run's record (cell.json, config.yaml, final.json with the confusion
matrix and versions, metrics.csv; a few KiB, no checkpoints) to ``DIR/<cell>/``, e.g.
``DIR/busi/resnet18/quantum/seed0/``. ``qhead report DIR`` then rebuilds every table and
plot from the records alone. Re-running is idempotent; unfinished runs are skipped and
listed; several runs dirs (shards, machines) are merged, and a cell found in two of them
with a different config or different results is refused.

Example::

    qhead export-records runs-busi224 --out results/busi-resnet18-224
    qhead report results/busi-resnet18-224 --out results/busi-resnet18-224/report
"""

from __future__ import annotations

import argparse
import sys

from qhead.experiments.records import export_records


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export-records",
        help="copy finished runs' small records (no checkpoints) into a committable folder",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("runs_dirs", nargs="+", metavar="RUNS_DIR",
                        help="grid output dirs (or earlier exports) to take records from")
    parser.add_argument("--out", required=True, help="export folder, e.g. results/<name>")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an exported record that is a different run of its cell")
    return parser


def run(args: argparse.Namespace) -> int:
    outcome = export_records(args.runs_dirs, args.out, overwrite=args.overwrite)
    for key, source in outcome.copied:
        print(f"exported  {key}  (from {source})")
    for key in outcome.unchanged:
        print(f"unchanged {key}")
    for line in outcome.skipped:
        print(f"skipped   {line}")
    for line in outcome.conflicts:
        print(f"conflict  {line}", file=sys.stderr)
    print(f"{len(outcome.copied)} exported, {len(outcome.unchanged)} unchanged, "
          f"{len(outcome.skipped)} skipped, {len(outcome.conflicts)} conflict(s) -> {args.out}")
    if outcome.copied or outcome.unchanged:
        print(f"next: qhead report {args.out}")
    return 1 if outcome.conflicts else 0
