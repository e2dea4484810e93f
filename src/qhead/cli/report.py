"""``qhead report RUNS_DIR...``: paper-style tables (Markdown, CSV) and plots from finished runs.

Reads every run dir under the RUNS_DIRs that has a ``final.json`` (as written by ``qhead
train`` / ``qhead reproduce``, or exported by ``qhead export-records``) and writes
``report.md``, ``summary.csv``, ``runs.csv`` and PNG plots to ``--out`` (default
``RUNS_DIR/report`` of the first). Several RUNS_DIRs (shards in separate folders,
machines that ran different cells, exported records) are merged by cell; a cell found in
two of them with a different config or different results is refused, naming the cell and
the difference.
"""

from __future__ import annotations

import argparse

from qhead.experiments.report import write_report


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "report",
        help="tables (mean ± std, paired 95%% CIs, paper numbers) and plots of a runs dir",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("runs_dirs", nargs="+", metavar="RUNS_DIR",
                        help="directories of run dirs or exported records (merged)")
    parser.add_argument("--out", help="output dir (default: the first RUNS_DIR/report)")
    parser.add_argument("--confidence", type=float, default=0.95,
                        help="coverage of the paired t intervals (default: 0.95)")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    return parser


def run(args: argparse.Namespace) -> int:
    files = write_report(args.runs_dirs, args.out, args.confidence, plots=not args.no_plots)
    print(files.markdown.read_text())
    print("wrote", files.markdown, files.summary_csv, files.runs_csv, *files.plots, sep="\n  ")
    return 0
