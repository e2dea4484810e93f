"""``qhead report RUNS_DIR``: paper-style tables (Markdown, CSV) and plots from finished runs.

Reads every run dir under RUNS_DIR that has a ``final.json`` (as written by ``qhead
train`` / ``qhead reproduce``) and writes ``report.md``, ``summary.csv``, ``runs.csv``
and PNG plots to ``--out`` (default ``RUNS_DIR/report``).
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
    parser.add_argument("runs_dir", metavar="RUNS_DIR", help="directory of run dirs")
    parser.add_argument("--out", help="output dir (default: RUNS_DIR/report)")
    parser.add_argument("--confidence", type=float, default=0.95,
                        help="coverage of the paired t intervals (default: 0.95)")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    return parser


def run(args: argparse.Namespace) -> int:
    files = write_report(args.runs_dir, args.out, args.confidence, plots=not args.no_plots)
    print(files.markdown.read_text())
    print("wrote", files.markdown, files.summary_csv, files.runs_csv, *files.plots, sep="\n  ")
    return 0
