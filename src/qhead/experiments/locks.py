"""Per-cell locks: two grid processes on one output folder never train one cell twice.

A grid process takes ``<run dir>/.lock`` (:data:`~qhead.engine.record.LOCK_FILE`) with an
exclusive, non-blocking ``flock`` before it touches a cell, and hands the locked file
descriptor to the training process it starts, so the lock is held for as long as either
of them lives. A cell whose lock is taken is left to its owner. The operating system
releases a ``flock`` when the last process holding it ends, however it ends (exit, crash,
``SIGKILL``, power loss of the machine that held it on a local disk), so a lock left by a
crash is simply free: there is no stale state to clean up. The file itself stays in the
run dir (deleting it would let two processes lock two different files of one name); its
text names the last owner (pid, host, time) for messages and is not what locks.

``flock`` works on local file systems and on NFSv4 (Linux emulates it with byte-range
locks). On a system without :mod:`fcntl` (Windows) cells are not locked.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from pathlib import Path

from qhead.engine.record import LOCK_FILE
from qhead.errors import QheadError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["CellLock"]


class CellLock:
    """An exclusive lock on one run dir.

    Example::

        lock = CellLock(run_dir)
        if lock.acquire():
            try:
                ...  # train the cell; subprocess.Popen(..., pass_fds=[lock.fd])
            finally:
                lock.release()
        else:
            print("busy:", lock.owner())
    """

    def __init__(self, run_dir: Path | str) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.fd: int | None = None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def acquire(self) -> bool:
        """Takes the lock without waiting; ``False`` if another process holds it.

        Raises:
            QheadError: if the file system refuses locks altogether (naming the path).
        """
        if self.fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                os.close(fd)
                if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    return False
                raise QheadError(
                    f"{self.path}: cannot lock ({error.strerror}); this file system does not "
                    "support flock: use a local disk for --out"
                ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                     f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n".encode())
        self.fd = fd
        return True

    def owner(self) -> str:
        """Who took the lock last (pid, host, time), as written by :meth:`acquire`."""
        try:
            return self.path.read_text().strip() or "unknown owner"
        except OSError:
            return "unknown owner"

    def release(self) -> None:
        """Gives the lock up (a training process it was handed to keeps it until it ends)."""
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        # close, never LOCK_UN: the lock belongs to the open file description, which a
        # training process given this descriptor shares; unlocking would free it under it
        os.close(fd)

    def __enter__(self) -> CellLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
