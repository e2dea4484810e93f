"""The process's memory allocator: keep freed blocks for reuse instead of unmapping them.

glibc serves an allocation above its mmap threshold (128 KiB, raised on the fly up to
32 MiB after such a block is freed) with a fresh ``mmap`` and unmaps it on free, so the
next tensor of that size pays a page fault, and the kernel's zeroing, for every 4 KiB
page it touches. On this project's 2-core VMs that was most of an elementwise op on a
``[32, 32768]`` float32 tensor: PennyLane's ``AmplitudeEmbedding`` normalisation (norm,
divide and their backward) took 13 ms with glibc's defaults and 4.5 ms with freed
blocks kept; and because the on-the-fly threshold depends on the order of a process's
first frees, the same benchmark was 2× slower in some processes than in others
(measured in session 22, ``docs/simulator.md``).

:func:`keep_freed_memory` sets ``M_MMAP_THRESHOLD`` to 32 MiB (glibc's maximum) and
``M_TRIM_THRESHOLD`` to 1 GiB: blocks up to 32 MiB come from the heap, and freed memory
stays in the process for the next allocation. The price is that the resident size does
not shrink after a peak. The ``qhead`` command calls it when it starts (set
``QHEAD_KEEP_FREED_MEMORY=0`` to opt out); ``import qhead`` does not change the
allocator of your program: call the function yourself, or start Python with
``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824`` (or preload
jemalloc/tcmalloc, as PyTorch's CPU performance guide suggests). qhead's own kernels
reuse their buffers either way (:mod:`qhead.simulator.kernels`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["OPT_OUT_VARIABLE", "freed_memory_kept", "keep_freed_memory"]

#: Environment variable that, set to ``0``, makes :func:`keep_freed_memory` a no-op.
OPT_OUT_VARIABLE = "QHEAD_KEEP_FREED_MEMORY"

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 << 20  # glibc refuses more (HEAP_MAX_SIZE / 2 on 64-bit)
_TRIM_THRESHOLD = 1 << 30

_APPLIED = False


def keep_freed_memory() -> bool:
    """Tunes glibc's malloc so that freed blocks up to 32 MiB are reused (module docs).

    Returns:
        True when the setting is in effect (applied now or before); False where it does
        not apply: not Linux with glibc, or ``QHEAD_KEEP_FREED_MEMORY=0``.
    """
    global _APPLIED
    if _APPLIED:
        return True
    if os.environ.get(OPT_OUT_VARIABLE, "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    _APPLIED = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )
    return _APPLIED


def freed_memory_kept() -> bool:
    """Whether :func:`keep_freed_memory` has taken effect in this process."""
    return _APPLIED
