"""Experiments: multi-seed grids over the paper presets, reports, and the shot study.

Public API (the CLI commands ``qhead reproduce``, ``qhead report`` and ``qhead shots``
are thin wrappers around it):

* :class:`GridSpec`, :class:`Cell`, :data:`ARMS` — grid axes, cells, how each arm's model
  is derived from the paper presets; :func:`shard_cells` splits a grid over machines.
* :func:`plan`, :func:`run_plan` — skip finished cells, resume interrupted ones, run the
  rest as ``K`` parallel ``python -m qhead train`` processes.
* :func:`write_report` — paper-style Markdown/CSV tables with mean ± std, paired
  differences with 95 % t intervals, the paper's numbers, plots.
* :func:`shot_study`, :func:`write_shots_report` — metrics vs number of shots.
* :func:`paired_difference`, :func:`summarize` — the statistics, usable on their own.
"""

from qhead.experiments.grid import ARMS, ArmSpec, Cell, GridSpec, arm_spec, shard_cells
from qhead.experiments.paper import PAPER_RESULTS, PaperCell, paper_cell
from qhead.experiments.report import write_report
from qhead.experiments.runner import plan, run_plan
from qhead.experiments.shots import shot_study, write_shots_report
from qhead.experiments.stats import PairedDifference, Summary, paired_difference, summarize

__all__ = [
    "ARMS",
    "PAPER_RESULTS",
    "ArmSpec",
    "Cell",
    "GridSpec",
    "PairedDifference",
    "PaperCell",
    "Summary",
    "arm_spec",
    "paired_difference",
    "paper_cell",
    "plan",
    "run_plan",
    "shard_cells",
    "shot_study",
    "summarize",
    "write_report",
    "write_shots_report",
]
