"""``qhead reproduce``: run a (dataset × backbone × arm × seed) grid of the paper presets.

Example::

    qhead reproduce --datasets busi --backbones resnet18 \\
        --heads classical,quantum,flatten-linear,twin --seeds 5 --epochs 50 \\
        --data-root busi=../shared/data/busi --out runs/ --jobs 2
    qhead reproduce --splits grouped ...         # the leakage-free split (data.split=grouped)

Re-running the same command skips finished cells and resumes interrupted ones;
``--shard i/K`` runs the i-th of K disjoint parts (for K machines or a job array). Each
cell holds a lock while it trains, so two processes given the same --out (two shards by
mistake, or the same command twice) never train one cell twice. A split other than the
paper's gets its own run dirs, ``<out>/<dataset>-<split>/...``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from qhead.errors import ConfigError
from qhead.experiments.grid import (
    ARMS,
    DEFAULT_SPLIT,
    GridSpec,
    parse_shard,
    shard_cells,
)
from qhead.experiments.runner import format_plan, plan, run_plan, threads_per_job
from qhead.overrides import parse_overrides

BUDGET_KEYS: dict[str, tuple[str, ...]] = {
    "epochs": ("epochs",),
    "image_size": ("image_size",),
    "batch_size": ("batch_size",),
}
"""Budget flags → the dotted config keys they set (recorded in every run's config.yaml)."""


def _csv_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_seeds(text: str) -> list[int]:
    """``"5"`` → ``[0, 1, 2, 3, 4]``; ``"0,3,7"`` or ``"3-5"`` → those seeds."""
    text = text.strip()
    try:
        if "," in text:
            return [int(p) for p in _csv_list(text)]
        if "-" in text[1:]:
            low, high = text.split("-", 1)
            return list(range(int(low), int(high) + 1))
        count = int(text)
    except ValueError:
        raise ConfigError(
            f"--seeds: expected a count (5), a list (0,3,7) or a range (3-5), got {text!r}"
        ) from None
    if count < 1:
        raise ConfigError(f"--seeds: expected a count >= 1, got {count}")
    return list(range(count))


def parse_data_roots(items: list[str]) -> dict[str, str]:
    """``["busi=/data/busi"]`` → ``{"busi": "/data/busi"}``."""
    roots = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--data-root: expected DATASET=PATH, got {item!r}")
        roots[name.strip()] = path.strip()
    return roots


def grid_from_args(args: argparse.Namespace) -> GridSpec:
    """The :class:`GridSpec` described by the command line."""
    overrides: dict[str, Any] = {}
    for flag, keys in BUDGET_KEYS.items():
        value = getattr(args, flag, None)
        if value is not None:
            for key in keys:
                overrides[key] = value
    overrides.update(parse_overrides(args.overrides))
    return GridSpec(
        datasets=_csv_list(args.datasets),
        backbones=_csv_list(args.backbones),
        arms=_csv_list(args.heads),
        seeds=parse_seeds(args.seeds),
        overrides=overrides,
        data_roots=parse_data_roots(args.data_root),
        splits=_csv_list(args.splits),
    )


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "reproduce",
        help="run a multi-seed grid of paper presets and controls",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--datasets", default="busi", help="comma list (default: busi)")
    parser.add_argument("--backbones", default="resnet18", help="comma list: resnet18,maxvit_t")
    parser.add_argument(
        "--heads",
        default="classical,quantum",
        help=f"comma list of arms: {', '.join(ARMS)} (default: classical,quantum)",
    )
    parser.add_argument("--splits", "--split", default=DEFAULT_SPLIT,
                        help="comma list of dataset splits (data.split): paper (default), "
                             "grouped (leakage-free, see docs/data.md)")
    parser.add_argument("--seeds", default="3", help="count (5 = seeds 0..4), list or range")
    parser.add_argument("--epochs", type=int, help="budget: epochs (paper: 200)")
    parser.add_argument("--image-size", dest="image_size", type=int,
                        help="budget: input side in pixels (paper: 224)")
    parser.add_argument("--batch-size", dest="batch_size", type=int,
                        help="budget: batch size (paper: 32)")
    parser.add_argument("--data-root", action="append", default=[], metavar="DATASET=PATH",
                        help="where a dataset lives (repeatable); not part of the run identity")
    parser.add_argument("--out", default="runs", help="grid output dir (default: runs)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="training processes at once on this machine (threads = cores/jobs)")
    parser.add_argument("--shard", help="i/K: run only the i-th of K disjoint parts (0 <= i < K)")
    parser.add_argument("--done", action="append", default=[], metavar="DIR",
                        help="a folder of finished runs in the grid's layout (another "
                        "machine's runs dir, or exported records such as "
                        "results/busi-resnet18-224): its finished cells are skipped; "
                        "repeatable")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    parser.add_argument("--overwrite", action="store_true",
                        help="restart cells whose run dir holds a different configuration")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="extra dotted config overrides applied to every cell")
    return parser


def run(args: argparse.Namespace) -> int:
    grid = grid_from_args(args)
    cells = grid.cells()
    if args.shard:
        index, count = parse_shard(args.shard)
        cells = shard_cells(cells, index, count)
    threads = threads_per_job(args.jobs)
    for done_dir in args.done:
        if not Path(done_dir).is_dir():
            raise ConfigError(f"--done: {done_dir!r} is not a folder")
    planned = plan(grid, args.out, cells, done_dirs=args.done)
    budget = ", ".join(f"{k}={v}" for k, v in grid.overrides.items()) or "preset defaults"
    print(f"grid: {len(grid.cells())} cell(s)"
          + (f", shard {args.shard}: {len(cells)}" if args.shard else "")
          + f"; budget: {budget}; {args.jobs} job(s) x {threads} thread(s)")
    print(format_plan(planned))
    if args.dry_run:
        return 0
    outcome = run_plan(planned, jobs=args.jobs, overwrite=args.overwrite)
    print(
        f"finished {len(outcome.finished)}, skipped {len(outcome.skipped)}, "
        f"failed {len(outcome.failed)}, conflicts {len(outcome.conflicts)}"
        + (f", busy {len(outcome.busy)} (trained by another process; run again to check)"
           if outcome.busy else "")
    )
    if outcome.conflicts:
        print("conflicting run dirs were left alone: use another --out, or --overwrite",
              file=sys.stderr)
    if outcome.failed or outcome.conflicts:
        return 1
    print(f"next: qhead report {args.out}")
    return 0
