"""Per-cell locks: two grid processes on one output folder train each cell once."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from qhead.engine.record import LOCK_FILE
from qhead.experiments.locks import CellLock

# other processes lock with a bare flock (no qhead, no torch import: fast under load)
TRY_LOCK = textwrap.dedent(
    """\
    import fcntl, os, sys
    fd = os.open(os.path.join(sys.argv[1], ".lock"), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(1)
    """
)
HOLD_LOCK = textwrap.dedent(
    """\
    import fcntl, os, sys, time
    fd = os.open(os.path.join(sys.argv[1], ".lock"), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, f"pid {os.getpid()} on a host since now".encode())
    print("locked", flush=True)
    time.sleep(60)
    """
)


def _other_process_gets(run_dir: Path) -> bool:
    """Whether a separate process can take the lock of ``run_dir`` right now."""
    code = subprocess.run([sys.executable, "-c", TRY_LOCK, str(run_dir)], timeout=60).returncode
    assert code in (0, 1)
    return code == 0


def test_lock_is_exclusive_between_processes(tmp_path: Path) -> None:
    lock = CellLock(tmp_path / "cell")
    assert lock.acquire() and lock.held
    assert f"pid {os.getpid()}" in lock.owner()
    assert not _other_process_gets(tmp_path / "cell")
    lock.release()
    assert _other_process_gets(tmp_path / "cell")
    assert (tmp_path / "cell" / LOCK_FILE).exists()  # the file stays; only the flock counts


def test_lock_of_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        lock = CellLock(tmp_path)
        assert not lock.acquire()
        assert f"pid {holder.pid}" in lock.owner()
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        assert lock.acquire()  # the crash left a lock file, but no lock
        assert f"pid {os.getpid()}" in lock.owner()
        lock.release()
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_a_lock_handed_to_a_child_outlives_its_parent_handle(tmp_path: Path) -> None:
    lock = CellLock(tmp_path)
    assert lock.acquire()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                             pass_fds=[lock.fd])
    try:
        lock.release()  # the grid process lets go (or dies): the training child still holds it
        assert not _other_process_gets(tmp_path)
        child.kill()
        child.wait(timeout=30)
        assert _other_process_gets(tmp_path)
    finally:
        child.kill()
        child.wait(timeout=30)


SLOW_FAKE_TRAIN = textwrap.dedent(
    """\
    #!{python}
    import json, os, sys, time
    args = sys.argv[1:]
    out = dict(a.split("=", 1) for a in args if "=" in a)["out"]
    with open(os.path.join(out, "calls.jsonl"), "a") as f:
        f.write(json.dumps({{"pid": os.getpid()}}) + "\\n")
    time.sleep(0.6)
    with open(os.path.join(out, "final.json"), "w") as f:
        json.dump({{"accuracy": 0.5, "macro_f1": 0.5}}, f)
    """
)

GRID_PROCESS = textwrap.dedent(
    """\
    import sys
    from qhead.experiments.grid import GridSpec
    from qhead.experiments.runner import plan, run_plan
    out, fake = sys.argv[1], sys.argv[2]
    grid = GridSpec(["digits"], ["small_cnn"], ["classical", "quantum"], [0, 1], {"epochs": 1})
    outcome = run_plan(plan(grid, out), python=fake, echo=print, poll_seconds=0.02)
    print("RESULT", len(outcome.finished), len(outcome.skipped), len(outcome.busy),
          len(outcome.failed))
    """
)


def test_two_grid_processes_on_one_folder_train_each_cell_once(tmp_path: Path) -> None:
    fake = tmp_path / "fake_python"
    fake.write_text(SLOW_FAKE_TRAIN.format(python=sys.executable))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    out = tmp_path / "runs"
    grids = [subprocess.Popen([sys.executable, "-c", GRID_PROCESS, str(out), str(fake)],
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [g.communicate(timeout=300)[0] for g in grids]
    assert [g.returncode for g in grids] == [0, 0], outputs
    results = [[int(v) for v in line.split()[1:]] for text in outputs
               for line in text.splitlines() if line.startswith("RESULT")]
    run_dirs = sorted(p.parent for p in out.rglob("cell.json"))
    assert len(run_dirs) == 4
    for run_dir in run_dirs:
        calls = [json.loads(x) for x in (run_dir / "calls.jsonl").read_text().splitlines()]
        assert len(calls) == 1, run_dir  # trained once, by one of the two processes
        assert (run_dir / "final.json").is_file()
        assert (run_dir / "train.log").read_text().count("$ ") == 1
    finished = sum(r[0] for r in results)
    assert finished == 4 and all(r[3] == 0 for r in results)
    # every cell a process did not train, it saw as busy (running) or skipped (done)
    assert all(r[0] + r[1] + r[2] == 4 for r in results)


@pytest.mark.slow
def test_two_reproduce_commands_on_one_folder_with_real_training(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    command = [sys.executable, "-m", "qhead", "reproduce", "--datasets", "digits",
               "--backbones", "small_cnn", "--heads", "classical,quantum", "--seeds", "2",
               "--epochs", "1", "--image-size", "8", "--out", str(out),
               "data.max_per_class=10", "data.num_workers=0", "tensorboard=false",
               "plots=false"]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)  # the second starts while the first is training its first cell
    second = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    outputs = [p.communicate(timeout=600)[0] for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outputs
    run_dirs = sorted(p.parent for p in out.rglob("final.json"))
    assert len(run_dirs) == 4
    for run_dir in run_dirs:
        log = (run_dir / "train.log").read_text()
        assert log.count("$ ") == 1 and log.count("done: accuracy") == 1, log
    assert sum(text.count("] start ") for text in outputs) == 4
