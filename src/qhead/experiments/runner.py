"""Running a grid: plan (skip / resume / start), then K training subprocesses at a time.

Each cell is trained by its own ``python -m qhead train`` process, so a crash, an
out-of-memory error or a kill affects one cell only, and re-running the same
``qhead reproduce`` command resumes exactly where the grid stopped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qhead.engine.record import LOCK_FILE, LOG_FILE, write_cell_record
from qhead.errors import ConfigError
from qhead.experiments.grid import (
    Cell,
    CellStatus,
    GridSpec,
    cell_record,
    cell_status,
)
from qhead.experiments.locks import CellLock
from qhead.overrides import format_override


@dataclass
class PlannedCell:
    """A cell with its run dir, overrides and what will be done with it."""

    cell: Cell
    run_dir: Path
    overrides: dict[str, Any]
    status: CellStatus

    @property
    def action(self) -> str:
        return {"done": "skip", "resume": "resume", "new": "start", "conflict": "conflict"}[
            self.status.state
        ]


def plan(
    grid: GridSpec,
    out: Path | str,
    cells: Sequence[Cell] | None = None,
    done_dirs: Sequence[Path | str] = (),
) -> list[PlannedCell]:
    """The plan for ``cells`` (default: the whole grid) under output dir ``out``.

    ``done_dirs`` are folders in the grid's layout holding finished runs made elsewhere
    (another machine's runs dir, or the records ``qhead export-records`` wrote into the
    repository): a cell not finished under ``out`` but finished, with the same
    configuration, in one of them is skipped, so a grid continues across machines and
    sessions from its committed records.
    """
    out = Path(out)
    chosen = list(cells) if cells is not None else grid.cells()
    planned = []
    for cell in chosen:
        run_dir = cell.run_dir(out)
        overrides = grid.cell_overrides(cell)
        status = cell_status(run_dir, cell, overrides)
        if status.state == "new":
            for done_dir in done_dirs:
                if cell_status(cell.run_dir(done_dir), cell, overrides).state == "done":
                    status = CellStatus("done", (f"finished in {done_dir}",))
                    break
        planned.append(PlannedCell(cell, run_dir, overrides, status))
    return planned


def format_plan(planned: Sequence[PlannedCell]) -> str:
    """Human-readable plan, one line per cell plus counts."""
    lines = []
    for item in planned:
        model = item.cell.preset or f"{item.cell.backbone} + {item.cell.base} head (no preset)"
        line = f"{item.action:8s} {item.cell.key:48s} {model}"
        lines.append(line)
        for reason in item.status.reasons:
            lines.append(f"         ! {reason}")
    counts: dict[str, int] = {}
    for item in planned:
        counts[item.action] = counts.get(item.action, 0) + 1
    lines.append(
        f"{len(planned)} cell(s): "
        + ", ".join(f"{n} {a}" for a, n in sorted(counts.items()))
    )
    return "\n".join(lines)


def threads_per_job(jobs: int, cores: int | None = None) -> int:
    """Intra-op threads for each of ``jobs`` parallel processes: ``max(1, cores // jobs)``."""
    if jobs < 1:
        raise ConfigError(f"--jobs: expected an integer >= 1, got {jobs!r}")
    cores = cores if cores is not None else (os.cpu_count() or 1)
    return max(1, cores // jobs)


def train_command(
    item: PlannedCell,
    threads: int,
    python: str | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The ``python -m qhead train`` command line of one planned cell.

    The preset names the model; the cell's overrides (arm, budget, seed) follow as dotted
    ``key=value`` arguments, so the resolved ``config.yaml`` of the run records them all.
    """
    command = [python or sys.executable, "-m", "qhead", "train"]
    if item.cell.preset is not None:
        command += ["--preset", item.cell.preset]
    if item.status.state == "resume":
        command.append("--resume")
    command.extend(extra_args)
    command.extend(train_overrides(item, threads))
    return command


def train_overrides(item: PlannedCell, threads: int) -> list[str]:
    """The cell's dotted overrides plus where to write and how many threads to use.

    ``out``, ``threads`` and ``progress`` are not part of the cell's identity (a run
    moved to another dir or machine is the same run), so they come after the overrides.
    """
    items = [format_override(k, v) for k, v in item.overrides.items()]
    items += [f"out={item.run_dir}", f"threads={threads}", "progress=false"]
    return items


def train_in_process(item: PlannedCell, threads: int, log: Path) -> int:
    """Trains one cell in this process with :func:`qhead.engine.train`; returns 0 or 1.

    Same configuration as the subprocess launcher (same preset and overrides), without
    the interpreter start-up per cell; the engine's output goes to ``log``.
    """
    import contextlib
    import traceback

    from qhead.engine import load_config, train

    with log.open("a") as handle, contextlib.redirect_stdout(handle), \
            contextlib.redirect_stderr(handle):
        try:
            cfg = load_config(preset=item.cell.preset, overrides=train_overrides(item, threads))
            train(cfg, resume=item.status.state == "resume")
        except Exception:
            traceback.print_exc(file=handle)
            return 1
    return 0


@dataclass
class RunOutcome:
    """Result of one cell's training process."""

    item: PlannedCell
    returncode: int
    seconds: float
    log: Path


@dataclass
class GridOutcome:
    """What :func:`run_plan` did.

    ``busy`` holds the cells another process was training (their lock was taken): left
    to it, neither trained here nor failed.
    """

    finished: list[RunOutcome] = field(default_factory=list)
    failed: list[RunOutcome] = field(default_factory=list)
    skipped: list[PlannedCell] = field(default_factory=list)
    conflicts: list[PlannedCell] = field(default_factory=list)
    busy: list[PlannedCell] = field(default_factory=list)


def _environment(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    # the BLAS/OpenMP pools of K processes must not oversubscribe the cores
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(threads)
    return env


def _clear_run_dir(run_dir: Path) -> None:
    """Deletes a run dir's content but its lock file (which this process holds)."""
    for path in run_dir.iterdir():
        if path.name == LOCK_FILE:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _claim(
    item: PlannedCell, overwrite: bool, outcome: GridOutcome, echo: Callable[[str], None]
) -> tuple[PlannedCell, CellLock] | None:
    """Locks a cell and decides again under the lock what to do with it (another process
    may have finished or started it since the plan was made); ``None`` if it is not ours
    to train."""
    lock = CellLock(item.run_dir)
    if not lock.acquire():
        outcome.busy.append(item)
        echo(f"busy     {item.cell.key}: being trained by another process ({lock.owner()})")
        return None
    status = cell_status(item.run_dir, item.cell, item.overrides)
    item = PlannedCell(item.cell, item.run_dir, item.overrides, status)
    if status.state == "done":
        lock.release()
        outcome.skipped.append(item)
        echo(f"skip     {item.cell.key}: finished by another process")
        return None
    if status.state == "conflict":
        if not overwrite:
            lock.release()
            outcome.conflicts.append(item)
            echo(f"conflict {item.cell.key}: " + "; ".join(item.status.reasons))
            return None
        _clear_run_dir(item.run_dir)
        item = PlannedCell(item.cell, item.run_dir, item.overrides, CellStatus("new"))
    write_cell_record(item.run_dir, cell_record(item.cell, item.overrides))
    return item, lock


def run_plan(
    planned: Sequence[PlannedCell],
    jobs: int = 1,
    cores: int | None = None,
    overwrite: bool = False,
    extra_args: Sequence[str] = (),
    python: str | None = None,
    echo: Callable[[str], None] = print,
    poll_seconds: float = 0.5,
    in_process: bool = False,
) -> GridOutcome:
    """Trains every cell that is not finished, ``jobs`` processes at a time.

    Each cell is locked (:class:`~qhead.experiments.locks.CellLock`) before it is touched
    and its status is decided again under the lock, so several grid processes may share
    one output dir: a cell is trained by one of them only, the others skip it (``busy``
    while it runs, ``skipped`` once finished). The training subprocess inherits the lock,
    so it stays held while it runs even if this process dies.

    Args:
        planned: the plan from :func:`plan`.
        jobs: processes run at once on this machine.
        cores: cores to share among them (default: ``os.cpu_count()``).
        overwrite: delete and restart run dirs whose configuration differs (``conflict``);
            without it such cells are reported and left alone.
        extra_args: arguments passed to every ``qhead train`` before the overrides.
        python: interpreter (default: the current one).
        echo: where progress lines go.
        poll_seconds: how often running processes are polled.
        in_process: train the cells one after another in this process (no subprocess,
            ``jobs`` must be 1); for notebooks and tests.

    Returns:
        The :class:`GridOutcome`; each process's output is in ``<run_dir>/train.log``.
    """
    threads = threads_per_job(jobs, cores)
    outcome = GridOutcome()
    queue: list[PlannedCell] = []
    for item in planned:
        if item.status.state == "done":
            outcome.skipped.append(item)
        elif item.status.state == "conflict" and not overwrite:
            outcome.conflicts.append(item)
            echo(f"conflict {item.cell.key}: " + "; ".join(item.status.reasons))
        else:
            queue.append(item)
    total = len(queue)
    if in_process and jobs != 1:
        raise ConfigError("--jobs: in-process training runs one cell at a time (jobs=1)")
    number = 0
    if in_process:
        for item in queue:
            claimed = _claim(item, overwrite, outcome, echo)
            if claimed is None:
                continue
            item, lock = claimed
            number += 1
            with lock:
                echo(f"[{number}/{total}] {item.action} {item.cell.key} (in process)")
                t0 = time.monotonic()
                log = item.run_dir / LOG_FILE
                code = train_in_process(item, threads, log)
            _record(outcome, RunOutcome(item, code, time.monotonic() - t0, log), echo)
        return outcome
    running: list[tuple[PlannedCell, subprocess.Popen, float, Path, Any, CellLock]] = []
    while queue or running:
        while queue and len(running) < jobs:
            claimed = _claim(queue.pop(0), overwrite, outcome, echo)
            if claimed is None:
                continue
            item, lock = claimed
            log = item.run_dir / LOG_FILE
            handle = log.open("a")
            command = train_command(item, threads, python, extra_args)
            handle.write("$ " + " ".join(command) + "\n")
            handle.flush()
            try:
                process = subprocess.Popen(
                    command, stdout=handle, stderr=subprocess.STDOUT,
                    env=_environment(threads), pass_fds=[lock.fd] if lock.fd is not None else [],
                )
            except BaseException:
                handle.close()
                lock.release()
                raise
            number += 1
            echo(f"[{number}/{total}] {item.action} {item.cell.key} (pid {process.pid})")
            running.append((item, process, time.monotonic(), log, handle, lock))
        still = []
        for item, process, t0, log, handle, lock in running:
            code = process.poll()
            if code is None:
                still.append((item, process, t0, log, handle, lock))
                continue
            handle.close()
            lock.release()
            _record(outcome, RunOutcome(item, code, time.monotonic() - t0, log), echo)
        running = still
        if running:
            time.sleep(poll_seconds)
    return outcome


def _record(outcome: GridOutcome, result: RunOutcome, echo: Callable[[str], None]) -> None:
    if result.returncode == 0:
        outcome.finished.append(result)
        echo(f"done     {result.item.cell.key} in {result.seconds:.0f} s")
    else:
        outcome.failed.append(result)
        echo(f"FAILED   {result.item.cell.key} (exit {result.returncode}); see {result.log}")
