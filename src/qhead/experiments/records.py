"""Exporting run records: the small, committable part of finished runs.

``qhead export-records RUNS_DIR... --out results/<name>`` copies, for every finished run
under the runs dirs, its record (:data:`~qhead.engine.record.RECORD_FILES`: ``cell.json``,
``config.yaml``, ``final.json`` with the confusion matrix and versions, ``metrics.csv``; a
few KiB, no checkpoint) to ``<out>/<cell key>/``, the same layout a grid writes
(``busi/resnet18/quantum/seed0``, ``busi-grouped/...`` for another split). ``qhead report
<out>`` then rebuilds every table and plot from the records alone.

Exporting is idempotent: a record already exported (the same run, even from a copy of the
run dir elsewhere) is left as it is; an unfinished run is skipped and listed; a different
run of a cell that was already exported is a conflict (left alone unless ``overwrite``).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from qhead.engine.record import FINAL_FILE, RECORD_FILES
from qhead.errors import DataError
from qhead.experiments.results import RunResult, collect_runs, load_run, run_differences

__all__ = ["ExportOutcome", "export_records"]


@dataclass
class ExportOutcome:
    """What :func:`export_records` did, one entry per run.

    Attributes:
        copied: ``(cell key, source run dir)`` of records written now.
        unchanged: cell keys whose record was already there (same run).
        conflicts: one line per cell whose exported record is another run.
        skipped: one line per run dir not exported (unfinished or unreadable).
    """

    copied: list[tuple[str, Path]] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _same_bytes(source: Path, target: Path) -> bool:
    return all(
        (target / name).is_file() and (target / name).read_bytes() == (source / name).read_bytes()
        for name in RECORD_FILES
        if (source / name).is_file()
    )


def _copy_record(run: RunResult, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in RECORD_FILES:
        stale = target / name
        if stale.is_file() and not (run.run_dir / name).is_file():
            stale.unlink()  # a record is replaced as a whole
    # final.json last: a record interrupted half-way has no final.json, so it reads as
    # unfinished and the next export completes it
    names = [n for n in RECORD_FILES if n != FINAL_FILE] + [FINAL_FILE]
    for name in names:
        source = run.run_dir / name
        if source.is_file():
            tmp = target / (name + ".tmp")
            shutil.copyfile(source, tmp)
            tmp.replace(target / name)


def export_records(
    runs_dirs: Sequence[Path | str], out: Path | str, overwrite: bool = False
) -> ExportOutcome:
    """Copies the record of every finished run under ``runs_dirs`` to ``out/<cell key>/``.

    Args:
        runs_dirs: grid output dirs, run dirs' parents or earlier exports (merged by cell;
            a cell found twice must be the same run).
        out: the export folder (created), e.g. ``results/busi-resnet18-224``.
        overwrite: replace an exported record that is a different run of the same cell.

    Raises:
        DataError: if a runs dir is missing, or two of them hold different runs of a cell.
    """
    out = Path(out)
    runs, problems = collect_runs(runs_dirs)
    outcome = ExportOutcome(skipped=list(problems))
    for run in runs:
        target = out / run.cell_key
        if target.resolve() == run.run_dir.resolve():
            outcome.unchanged.append(run.cell_key)  # exporting an export onto itself
            continue
        if (target / FINAL_FILE).is_file():
            if _same_bytes(run.run_dir, target):
                outcome.unchanged.append(run.cell_key)
                continue
            try:
                differences = run_differences(load_run(target), run)
            except DataError as error:
                differences = [f"the exported record is unreadable ({error})"]
            if not differences:
                outcome.unchanged.append(run.cell_key)
                continue
            if not overwrite:
                outcome.conflicts.append(
                    f"{run.cell_key}: {target} holds another run than {run.run_dir} ("
                    + "; ".join(differences[:3])
                    + "); left alone (--overwrite replaces it)"
                )
                continue
        _copy_record(run, target)
        outcome.copied.append((run.cell_key, run.run_dir))
    return outcome
