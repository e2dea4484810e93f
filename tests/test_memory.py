"""qhead.memory: the allocator setting the qhead command applies to its own process."""

import os
import subprocess
import sys

import pytest

from qhead.memory import OPT_OUT_VARIABLE

_GLIBC = sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION") is not None


def _run(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != OPT_OUT_VARIABLE}
    result = subprocess.run([sys.executable, "-c", code], env={**clean, **env},
                            capture_output=True, text=True, check=True, timeout=120)
    return result.stdout.strip()


@pytest.mark.skipif(not _GLIBC, reason="mallopt is glibc's")
def test_blocks_up_to_32_mib_come_from_the_heap_once_kept():
    # glibc's defaults map a 24 MiB block on its own (and unmap it on free: fresh pages,
    # page faults, the next time); kept, it comes from the heap, next to small blocks.
    code = (
        "import ctypes, qhead.memory as m\n"
        "libc = ctypes.CDLL('libc.so.6'); libc.malloc.restype = ctypes.c_void_p\n"
        "libc.free.argtypes = (ctypes.c_void_p,)\n"
        "def in_heap(size):\n"
        "    a = libc.malloc(size); small = libc.malloc(64); libc.free(a); libc.free(small)\n"
        "    return abs(a - small) < (1 << 30)\n"
        "before = in_heap(24 << 20)\n"
        "print(before, m.keep_freed_memory(), m.keep_freed_memory(), in_heap(24 << 20))\n"
    )
    assert _run(code) == "False True True True"


def test_opting_out_leaves_the_allocator_alone():
    code = "import qhead.memory as m; print(m.keep_freed_memory())"
    assert _run(code, **{OPT_OUT_VARIABLE: "0"}) == "False"


def test_importing_qhead_does_not_change_the_allocator():
    assert _run("import qhead, qhead.memory as m; print(m.freed_memory_kept())") == "False"


def test_the_qhead_command_keeps_freed_memory():
    code = (
        "import contextlib, io, qhead.memory as m\n"
        "from qhead.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['list', 'ansatze'])\n"
        "print(m.freed_memory_kept())\n"
    )
    assert _run(code) == str(_GLIBC)
