"""Compiled CPU kernels (numba) for the simulator's hot paths.

On a CPU the torch implementation of a 15-qubit layer is limited by memory traffic:
every gate or every measured wire is one elementwise op that streams the whole batch
of states (4 MiB at batch 32) through the caches. These kernels work one example at a
time instead, so its state (128 KiB) stays in the core's L2 cache while all wires are
processed, and the batch is split over ``torch.get_num_threads()`` threads (the kernels
release the GIL). They compute exactly the same quantities as the torch code, in the
same dtype; tests compare both paths and PennyLane.

* :func:`zx_forward` / :func:`zx_backward`: ⟨Z_k⟩ and ⟨X_k⟩ of a real state for every
  wire k, and the gradient of ``Σ gz·Z + gx·X`` (Ansatz 1's closed form);
  :func:`encoded_zx_forward` / :func:`encoded_zx_backward` do the same from the raw
  features, amplitude encoding included (the states are never stored).
* :func:`encoded_layer_forward` / :func:`encoded_layer_backward`: the encoded state,
  one real 2×2 matrix per wire, then ⟨±Z-parities⟩ from a sign table (a layer of
  one-qubit gates with the CNOTs after it folded into the table: Ansatz 2 with D = 1),
  and the gradients with respect to the features and to the matrices.
* :func:`general_forward` / :func:`general_backward`: any program of one-qubit matrices,
  signed permutations and phases, adjoint backward, examples interleaved in groups.
* :func:`walsh_forward` / :func:`walsh_backward`: circuits in the Hadamard frame
  (H·diag(e^{iΦ_K})·…·H·diag(e^{iΦ_1})·[H]·Q; :mod:`qhead.simulator.walsh` builds Q and
  the Φ_k), in the general kernel's lane layout.

``qhead.simulator.circuit`` uses them automatically for real float32/float64 CPU
tensors with n ≥ 3 when numba is installed; set the environment variable
``QHEAD_CPU_KERNELS=0`` (read at import) or call :func:`set_enabled` to use the torch
code everywhere. The first call in a fresh environment compiles the kernels (seconds);
numba caches the machine code on disk afterwards.
"""

from __future__ import annotations

import mmap
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

try:  # numba is a dependency, but a platform without its wheels still works (slower).
    import numba
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None

__all__ = [
    "KernelThreadWarning",
    "Lease",
    "available",
    "enabled",
    "encoded_layer_backward",
    "encoded_layer_forward",
    "encoded_zx_backward",
    "encoded_zx_forward",
    "free_buffers",
    "general_backward",
    "general_forward",
    "set_enabled",
    "usable",
    "usable_features",
    "walsh_backward",
    "walsh_forward",
    "walsh_hadamard",
    "walsh_phase_angles",
    "zx_backward",
    "zx_forward",
]

_ENABLED = numba is not None and os.environ.get("QHEAD_CPU_KERNELS", "1") != "0"

#: Smallest register the kernels handle (the three lowest wires are unrolled).
MIN_QUBITS = 3


def available() -> bool:
    """Whether numba is installed (the kernels can be compiled)."""
    return numba is not None


def enabled() -> bool:
    """Whether the simulator currently uses the kernels where they apply."""
    return _ENABLED


def set_enabled(flag: bool) -> bool:
    """Turns the kernels on or off (for comparisons); returns the previous setting.

    Raises:
        RuntimeError: when asked to enable them without numba installed.
    """
    global _ENABLED
    if flag and numba is None:
        raise RuntimeError("the CPU kernels need numba: pip install numba")
    previous, _ENABLED = _ENABLED, bool(flag)
    return previous


def usable(state: torch.Tensor) -> bool:
    """Whether a ``[B, 2^n]`` (or ``[B] + [2]*n``) state can take the kernel path."""
    n = state.dim() - 1 if state.dim() > 2 else state.shape[-1].bit_length() - 1
    return (
        _ENABLED
        and state.device.type == "cpu"
        and state.dtype in (torch.float32, torch.float64)
        and n >= MIN_QUBITS
        and state.shape[0] > 0
    )


def usable_features(features: torch.Tensor, n: int, min_qubits: int = MIN_QUBITS) -> bool:
    """Whether ``[B, N]`` features for an n-qubit register can take the fused kernels
    (the general kernel, :func:`general_forward`, takes any n ≥ 1: ``min_qubits=1``)."""
    return (
        _ENABLED
        and features.device.type == "cpu"
        and features.dtype in (torch.float32, torch.float64)
        and n >= min_qubits
        and features.shape[0] > 0
        and 0 < features.shape[1] <= 2**n
    )


if numba is not None:
    # Reassociation lets LLVM vectorise the reductions; no flags that assume finite
    # values. Integer literals are kept out of float arithmetic on purpose: numba
    # would promote float32 expressions to float64 (half the vector width).
    _FAST = {"reassoc", "contract", "nsz", "arcp"}
    _jit = numba.njit(nogil=True, cache=True, fastmath=_FAST)
    _inline = numba.njit(nogil=True, cache=True, fastmath=_FAST, inline="always")

    # ---------------------------------------------------------------- 16×16 transpose
    # The lane layout interleaves 16 examples per amplitude; the features and their
    # gradient are one example per row. Converting a 16×16 tile element by element costs
    # one scalar store per value (LLVM does not find the shuffles); the intrinsics below
    # move a tile in registers, 16 vector loads, 64 shuffles and 16 vector stores (the
    # Hadamard-frame kernel's scatter through τ, 16 examples, n = 15, one thread: 308 →
    # 81 µs float32; its gather for the feature gradient 372 → 87 µs; session 27).
    from llvmlite import ir as _ir
    from numba.extending import intrinsic as _intrinsic

    def _shuffle_plan():
        """Masks of the four shuffle stages (32-bit, 64-bit, 128-bit, 256-bit
        interleaves, as unpcklps/unpcklpd/shuff32x4 do): (low, high) per stage."""
        return (
            ([0, 16, 1, 17, 4, 20, 5, 21, 8, 24, 9, 25, 12, 28, 13, 29],
             [2, 18, 3, 19, 6, 22, 7, 23, 10, 26, 11, 27, 14, 30, 15, 31]),
            ([0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29],
             [2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31]),
            ([0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27],
             [4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31]),
            ([0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23],
             [8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31]),
        )

    def _mask(indices):
        """A shufflevector mask: the 16 element indices (0–15 the first vector, 16–31 the
        second)."""
        return _ir.Constant(_ir.VectorType(_ir.IntType(32), 16), indices)

    def _transpose_rows(builder, rows):
        """The 16 vectors ``rows`` (row r of a 16×16 tile each) → the tile's 16 columns,
        by the four interleave stages of :func:`_shuffle_plan`."""
        (lo32, hi32), (lo64, hi64), (lo128, hi128), (lo256, hi256) = _shuffle_plan()

        def shuffle(a, b, mask):
            return builder.shuffle_vector(a, b, _mask(mask))

        t = [None] * 16
        for i in range(8):
            t[2 * i] = shuffle(rows[2 * i], rows[2 * i + 1], lo32)
            t[2 * i + 1] = shuffle(rows[2 * i], rows[2 * i + 1], hi32)
        u = [None] * 16
        for i in range(4):
            for k in range(2):
                u[4 * i + 2 * k] = shuffle(t[4 * i + k], t[4 * i + 2 + k], lo64)
                u[4 * i + 2 * k + 1] = shuffle(t[4 * i + k], t[4 * i + 2 + k], hi64)
        v = [None] * 16
        for i in range(2):
            for k in range(4):
                v[8 * i + k] = shuffle(u[8 * i + k], u[8 * i + 4 + k], lo128)
                v[8 * i + 4 + k] = shuffle(u[8 * i + k], u[8 * i + 4 + k], hi128)
        columns = [None] * 16
        for k in range(8):
            columns[k] = shuffle(v[k], v[8 + k], lo256)
            columns[8 + k] = shuffle(v[k], v[8 + k], hi256)
        return columns

    def _vector_at(builder, base, offset, vector):
        """A pointer to the ``vector`` that starts ``offset`` elements after ``base``."""
        return builder.bitcast(builder.gep(base, [offset]), vector.as_pointer())

    def _splat(builder, vector, value):
        """``value`` in every element of a ``vector``."""
        first = builder.insert_element(_ir.Constant(vector, _ir.Undefined), value,
                                       _ir.Constant(_ir.IntType(32), 0))
        return builder.shuffle_vector(first, _ir.Constant(vector, _ir.Undefined), _mask([0] * 16))

    def _lane_row(builder, rows, start, t):
        """Offset (elements) of lane-layout row rows[start + t] of a group of 16."""
        i64 = _ir.IntType(64)
        at = builder.load(builder.gep(rows.data, [builder.add(start, _ir.Constant(i64, t))]))
        return builder.mul(at, _ir.Constant(i64, 16))

    def _tile_typed(feats, *others):
        """Whether the arrays of a tile intrinsic can be compiled: ``feats`` 2-D, all of
        one float dtype."""
        return (isinstance(feats, numba.types.Array) and feats.ndim == 2
                and feats.dtype in (numba.types.float32, numba.types.float64)
                and all(a.dtype == feats.dtype for a in others))

    def _arguments(context, builder, sig, args):
        """An intrinsic's arguments: arrays as numba array structures (``.data``,
        ``.strides``), the others as their LLVM values."""
        return [
            context.make_array(t)(context, builder, a) if isinstance(t, numba.types.Array)
            else a
            for t, a in zip(sig.args, args, strict=True)
        ]

    class _Tile:
        """What the tile intrinsics' code generation shares: the array arguments as
        arrays (the others as LLVM values), the 16-wide vector of the dtype, its
        alignment, and row pointers into 2-D example-major arrays."""

        def __init__(self, context, builder, sig, args, dtype):
            self.builder = builder
            self.args = _arguments(context, builder, sig, args)
            self.vector = _ir.VectorType(context.get_value_type(dtype), 16)
            self.align = dtype.bitwidth // 8
            self.i64 = _ir.IntType(64)

        def row(self, array, lane, start):
            """A vector pointer to array[lane, start : start + 16] (a 2-D array)."""
            b = self.builder
            stride = b.sdiv(b.extract_value(array.strides, 0),
                            _ir.Constant(self.i64, self.align))
            return _vector_at(b, array.data, b.add(
                b.mul(stride, _ir.Constant(self.i64, lane)), start), self.vector)

        def scalar(self, array, index):
            return self.builder.load(self.builder.gep(array.data, [_ir.Constant(self.i64, index)]))

        def load(self, pointer):
            value = self.builder.load(pointer)
            value.align = self.align
            return value

        def store(self, value, pointer):
            self.builder.store(value, pointer).align = self.align

    @_intrinsic
    def _scatter_tile(typingctx, feats, j0, scale, state, rows):
        """state[rows[j0 + t]·16 + l] = feats[l, j0 + t]·scale[l] for l, t < 16: one
        16×16 tile of :func:`_scaled_to_lanes` (16 examples) through registers."""
        if not (_tile_typed(feats, scale, state) and isinstance(rows, numba.types.Array)):
            return None

        def codegen(context, builder, sig, args):
            tile = _Tile(context, builder, sig, args, sig.args[0].dtype)
            f_arr, start, s_arr, o_arr, r_arr = tile.args
            rows = [builder.fmul(tile.load(tile.row(f_arr, lane, start)),
                                 _splat(builder, tile.vector, tile.scalar(s_arr, lane)))
                    for lane in range(16)]
            for t, column in enumerate(_transpose_rows(builder, rows)):
                offset = _lane_row(builder, r_arr, start, t)
                tile.store(column, _vector_at(builder, o_arr.data, offset, tile.vector))
            return context.get_dummy_value()

        return numba.types.void(feats, j0, scale, state, rows), codegen

    @_intrinsic
    def _gather_tile(typingctx, grad, feats, lam, j0, shift, scale, rows):
        """grad[l, j0 + t] = (lam[rows[j0 + t]·16 + l] − shift[l]·feats[l, j0 + t])·scale[l]
        for l, t < 16: one 16×16 tile of :func:`_scaled_from_lanes` through registers."""
        if not (_tile_typed(feats, grad, lam, shift, scale)
                and isinstance(rows, numba.types.Array)):
            return None

        def codegen(context, builder, sig, args):
            tile = _Tile(context, builder, sig, args, sig.args[1].dtype)
            g_arr, f_arr, l_arr, start, sh_arr, sc_arr, r_arr = tile.args
            rows = [tile.load(_vector_at(builder, l_arr.data,
                                         _lane_row(builder, r_arr, start, t), tile.vector))
                    for t in range(16)]
            for lane, column in enumerate(_transpose_rows(builder, rows)):
                x = tile.load(tile.row(f_arr, lane, start))
                t = _splat(builder, tile.vector, tile.scalar(sh_arr, lane))
                c = _splat(builder, tile.vector, tile.scalar(sc_arr, lane))
                value = builder.fmul(builder.fsub(column, builder.fmul(t, x)), c)
                tile.store(value, tile.row(g_arr, lane, start))
            return context.get_dummy_value()

        return numba.types.void(grad, feats, lam, j0, shift, scale, rows), codegen

    def _row_sums(block, rows):
        """The 16 vectors ``rows`` → one vector whose element t is the sum of rows[t]: four
        stages that each halve the vectors and the partial sums per row (8 + 4 + 2 + 1
        pairs of two shuffles and an addition; a transpose would take 64 shuffles)."""
        def stage(a, b, width):
            # Element blocks of ``width``: a's even blocks then b's → low; odd → high.
            low = [i for first in range(0, 32, 2 * width) for i in range(first, first + width)]
            high = [i + width for i in low]
            return block.add(block.builder.shuffle_vector(a, b, _mask(low)),
                             block.builder.shuffle_vector(a, b, _mask(high)))

        for width in (8, 4, 2, 1):
            rows = [stage(rows[2 * i], rows[2 * i + 1], width) for i in range(len(rows) // 2)]
        return rows[0]

    class _Block:
        """Code generation for a block of 16 amplitudes of a full group (16 lanes, lane
        layout): 16-wide vectors of the state arrays, splats of per-amplitude table
        entries, arithmetic with the kernels' fast-math flags."""

        def __init__(self, context, builder, sig, args, first):
            self.builder = builder
            self.arrays = _arguments(context, builder, sig, args)
            self.types = sig.args
            self.i64 = _ir.IntType(64)
            self.start = args[first]

        def _pointer(self, k, offset, width):
            array, dtype = self.arrays[k], self.types[k].dtype
            return _vector_at(self.builder, array.data, offset, _ir.VectorType(
                array.data.type.pointee, width)), dtype.bitwidth // 8

        def _row_pointer(self, k, t, shift):
            b = self.builder
            offset = b.mul(b.add(self.start, _ir.Constant(self.i64, t)),
                           _ir.Constant(self.i64, 16))
            return self._pointer(k, offset if shift is None else b.add(offset, shift), 16)

        def _load(self, pointer, align):
            value = self.builder.load(pointer)
            value.align = align
            return value

        def row(self, k, t, shift=None):
            """Amplitude j0 + t of array k, all 16 lanes (``shift`` values further on)."""
            return self._load(*self._row_pointer(k, t, shift))

        def store_row(self, k, t, value, shift=None):
            pointer, align = self._row_pointer(k, t, shift)
            self.builder.store(value, pointer).align = align

        def butterfly4(self, a0, a1, a2, a3):
            """The lowest two butterfly levels of four rows (:func:`_butterfly4_into`)."""
            p0, p1 = self.add(a0, a1), self.sub(a0, a1)
            p2, p3 = self.add(a2, a3), self.sub(a2, a3)
            return self.add(p0, p2), self.add(p1, p3), self.sub(p0, p2), self.sub(p1, p3)

        def entry(self, k, t):
            """Array k's entry j0 + t in every element."""
            b = self.builder
            value = b.load(b.gep(self.arrays[k].data, [b.add(self.start, _ir.Constant(
                self.i64, t))]))
            return _splat(b, _ir.VectorType(value.type, 16), value)

        def fast(self, instruction):
            instruction.flags.extend(("reassoc", "contract", "nsz", "arcp"))
            return instruction

        def add(self, a, b):
            return self.fast(self.builder.fadd(a, b))

        def sub(self, a, b):
            return self.fast(self.builder.fsub(a, b))

        def mul(self, a, b):
            return self.fast(self.builder.fmul(a, b))

        def total(self, values):
            """The sum of the vectors ``values``, left to right."""
            result = values[0]
            for value in values[1:]:
                result = self.add(result, value)
            return result

        def _add_into(self, k, offset, value):
            pointer, align = self._pointer(k, offset, 16)
            if pointer.type.pointee != value.type:
                value = self.builder.fpext(value, pointer.type.pointee)
            old = self._load(pointer, align)
            self.builder.store(self.add(old, value), pointer).align = align

        def add_to_lanes(self, k, value):
            """Array k [0 : 16] (one value per lane) += ``value``."""
            self._add_into(k, _ir.Constant(self.i64, 0), value)

        def add_sums(self, k, rows):
            """Array k [j0 : j0 + 16] += the 16 ``rows``' sums over their lanes (in
            array k's dtype, float64 or the rows')."""
            self._add_into(k, self.start, _row_sums(self, rows))

    def _block_typed(states, tables, out):
        """Whether a block intrinsic's arrays can be compiled: 1-D state arrays and
        tables of one float dtype, ``out`` 1-D float64 or that dtype."""
        arrays = [*states, *tables, out]
        if not all(isinstance(a, numba.types.Array) and a.ndim == 1 for a in arrays):
            return False
        dtype = states[0].dtype
        return (dtype in (numba.types.float32, numba.types.float64)
                and all(a.dtype == dtype for a in (*states, *tables))
                and out.dtype in (dtype, numba.types.float64))

    @_intrinsic
    def _unphase_gradient_block(typingctx, pr, pi, mr, mi, cos, sin, phase_grad, j0):
        """For the 16 amplitudes j = j0 … j0 + 15 of a full group: phase_grad[j] +=
        Σ_l Re(conj(μ)·i·e^{iΦ}·p) over the 16 lanes l (:func:`_phase_gradient_lanes`,
        whose sum over the lanes per amplitude LLVM compiles to scalar code, no 512-bit
        instruction in the loop; here a tree of shuffles, :func:`_row_sums`), and (mr,
        mi) ← the lowest two butterfly levels of e^{−iΦ}·μ (:func:`_unphase_butterfly_lanes`): the
        way back through a complex phase and the first pass of the transform after it in
        one read of μ (strongly-entangling D = 3, 16 rows, one thread: 4–5 % less than
        the two sweeps)."""
        if not _block_typed((pr, pi, mr, mi), (cos, sin), phase_grad):
            return None

        def codegen(context, builder, sig, args):
            k = _Block(context, builder, sig, args, 7)
            rows = []
            for quad in range(4):
                turned = ([], [])
                for t in range(4 * quad, 4 * quad + 4):
                    c, s = k.entry(4, t), k.entry(5, t)
                    x, y, a, b = (k.row(i, t) for i in range(4))
                    rows.append(k.sub(k.mul(b, k.sub(k.mul(c, x), k.mul(s, y))),
                                      k.mul(a, k.add(k.mul(s, x), k.mul(c, y)))))
                    turned[0].append(k.add(k.mul(a, c), k.mul(b, s)))
                    turned[1].append(k.sub(k.mul(b, c), k.mul(a, s)))
                for array, values in ((2, turned[0]), (3, turned[1])):
                    for t, value in enumerate(k.butterfly4(*values), start=4 * quad):
                        k.store_row(array, t, value)
            k.add_sums(6, rows)
            return context.get_dummy_value()

        return numba.types.void(pr, pi, mr, mi, cos, sin, phase_grad, j0), codegen

    @_intrinsic
    def _measured_top_block(typingctx, re, im, p, acc, j0, half):
        """The last butterfly level (the top index bit, wire 0; partner ``half`` values
        on) of a full group's complex state, for its 16 amplitudes j0 … j0 + 15, with the
        first ⟨Z⟩ fold in the same sweep: re, im ← the level's output, p[j] = |ψ_j|² +
        |ψ_{j+half}|², acc[l] += Σ (|ψ_j|² − |ψ_{j+half}|²) over the block (lane l)."""
        if not _block_typed((re, im, p, acc), (), acc):
            return None

        def codegen(context, builder, sig, args):
            k = _Block(context, builder, sig, args, 4)
            shift = args[5]
            steps = []
            for t in range(16):
                a, b = k.row(0, t), k.row(0, t, shift)
                c, d = k.row(1, t), k.row(1, t, shift)
                u, v, x, y = k.add(a, b), k.sub(a, b), k.add(c, d), k.sub(c, d)
                for array, value, where in ((0, u, None), (0, v, shift), (1, x, None),
                                            (1, y, shift)):
                    k.store_row(array, t, value, where)
                low = k.add(k.mul(u, u), k.mul(x, x))
                high = k.add(k.mul(v, v), k.mul(y, y))
                k.store_row(2, t, k.add(low, high))
                steps.append(k.sub(low, high))
            k.add_to_lanes(3, k.total(steps))
            return context.get_dummy_value()

        return numba.types.void(re, im, p, acc, j0, half), codegen

    @_intrinsic
    def _fold_block(typingctx, src, dst, acc, j0, half):
        """One ⟨Z⟩ fold (:func:`_fold_lane_halves`) for the 16 amplitudes j0 … j0 + 15 of
        a full group: dst[j] = src[j] + src[j + half], acc[l] += Σ src[j] − src[j + half]
        (``half`` in values), the sum kept in a register for the block."""
        if not _block_typed((src, dst, acc), (), acc):
            return None

        def codegen(context, builder, sig, args):
            k = _Block(context, builder, sig, args, 3)
            steps = []
            for t in range(16):
                a, b = k.row(0, t), k.row(0, t, args[4])
                k.store_row(1, t, k.add(a, b))
                steps.append(k.sub(a, b))
            k.add_to_lanes(2, k.total(steps))
            return context.get_dummy_value()

        return numba.types.void(src, dst, acc, j0, half), codegen

    def _unphase_intrinsic(butterfly: bool):
        """:func:`_unphase_block`, or with ``butterfly`` :func:`_unphase_butterfly_block`."""

        def typer(typingctx, w, mr, mi, rho, cos, sin, phase_grad, dots, j0):
            if not _block_typed((w, mr, mi, rho, dots), (cos, sin), phase_grad):
                return None

            def codegen(context, builder, sig, args):
                k = _Block(context, builder, sig, args, 8)
                rows, turned, products = [], [], []
                for t in range(16):
                    c, s = k.entry(4, t), k.entry(5, t)
                    x, a, b = k.row(0, t), k.row(1, t), k.row(2, t)
                    u = k.add(k.mul(a, c), k.mul(b, s))
                    turned.append(u)
                    rows.append(k.mul(x, k.sub(k.mul(b, c), k.mul(a, s))))
                    products.append(k.mul(x, u))
                if butterfly:
                    turned = [v for q in range(4) for v in k.butterfly4(*turned[4 * q : 4 * q + 4])]
                for t, u in enumerate(turned):
                    k.store_row(3, t, u)
                k.add_sums(6, rows)
                k.add_to_lanes(7, k.total(products))
                return context.get_dummy_value()

            return numba.types.void(w, mr, mi, rho, cos, sin, phase_grad, dots, j0), codegen

        return _intrinsic(typer)

    #: For the 16 amplitudes j0 … j0 + 15 of a full group (:func:`_unphase_lanes`):
    #: ρ = μr·cos + μi·sin, phase_grad[j] += Σ_l w·(μi·cos − μr·sin), dots[l] += Σ_j w·ρ.
    _unphase_block = _unphase_intrinsic(False)
    #: :func:`_unphase_block` storing the lowest two butterfly levels of ρ instead of ρ
    #: (the first radix-4 pass of the leading transform's way back, H·ρ).
    _unphase_butterfly_block = _unphase_intrinsic(True)

    # ---------------------------------------------------------------- vector loops
    # Loops take the arrays (or halves of one array) as separate slices and the matrix
    # entries as scalars: with no load from a matrix inside the loop, LLVM vectorises
    # even a loop that writes both halves of one array in place (after a runtime overlap
    # check). The general kernel's gates run that way: in place, one loop per stretch,
    # 2–3× faster than one loop per output half writing another buffer (session 20).

    @_inline
    def _dot(a, c):
        acc = a[0] - a[0]
        for i in range(a.shape[0]):
            acc += a[i] * c[i]
        return acc

    @_inline
    def _xor_dot(row, h):
        """Σ_i row[i]·row[i XOR h]. Called with a constant h (8 or 16), the unsigned XOR
        index vectorises; slices of 8 or 16 would make loops too short."""
        acc = row[0] - row[0]
        for i in range(np.uint64(0), np.uint64(row.shape[0]), np.uint64(1)):
            acc += row[i] * row[i ^ h]
        return acc

    @_inline
    def _axpy(out, c0, a0):
        for i in range(out.shape[0]):
            out[i] += c0 * a0[i]

    @_inline
    def _axpy2(out, c0, a0, c1, a1):
        for i in range(out.shape[0]):
            out[i] += c0 * a0[i] + c1 * a1[i]

    @_inline
    def _axpy3(out, c0, a0, c1, a1, c2, a2):
        for i in range(out.shape[0]):
            out[i] += (c0 * a0[i] + c1 * a1[i]) + c2 * a2[i]

    @_inline
    def _axpy4(out, c0, a0, c1, a1, c2, a2, c3, a3):
        for i in range(out.shape[0]):
            out[i] += (c0 * a0[i] + c1 * a1[i]) + (c2 * a2[i] + c3 * a3[i])

    @_inline
    def _mix(out, a, c, m0, m1):
        """out = m0·a + m1·c (one row of a 2×2 matrix applied to a pair of halves)."""
        for i in range(out.shape[0]):
            out[i] = m0 * a[i] + m1 * c[i]

    @_inline
    def _outer(la, lc, a, c):
        """Σ_i [la_i, lc_i]ᵀ [a_i, c_i]: the four entries of a 2×2 matrix."""
        s00 = s01 = s10 = s11 = a[0] - a[0]
        for i in range(a.shape[0]):
            s00 += la[i] * a[i]
            s01 += la[i] * c[i]
            s10 += lc[i] * a[i]
            s11 += lc[i] * c[i]
        return s00, s01, s10, s11

    # ---------------------------------------------------------------- encoding
    @_inline
    def _row_norm(feat):
        """‖feat‖ in float64; 0 for an all-zero row. Returns −1 for rows the kernels
        leave to the torch encoder: non-finite values (it raises the error) and norms
        outside [1e-30, 1e30] (where 1/‖x‖ would lose precision in float32; the torch
        encoder rescales first)."""
        acc = 0.0
        for i in range(feat.shape[0]):
            v = np.float64(feat[i])
            acc += v * v
        if not acc <= 1e60:  # also NaN and inf (a comparison, not isfinite, which
            return -1.0  # LLVM may fold under the fast-math flags)
        if acc == 0:
            return 0.0
        if acc < 1e-60:
            return -1.0
        return np.sqrt(acc)

    @_inline
    def _encode_row(feat, psi):
        """psi = pad(feat)/‖feat‖; returns ‖feat‖ as :func:`_row_norm` (−1: the row is left
        to the torch encoder). All-zero rows give |0…0⟩ and norm 0 (as
        :func:`qhead.simulator.amplitude_encode`)."""
        n_feat = feat.shape[0]
        norm = _row_norm(feat)
        if norm < 0:
            return norm
        if norm == 0:
            for i in range(psi.shape[0]):
                psi[i] = 0
            psi[0] = 1
            return 0.0
        psi[0] = 1.0 / norm  # the array converts the scale to its own dtype
        scale = psi[0]
        for i in range(n_feat):
            psi[i] = feat[i] * scale
        for i in range(n_feat, psi.shape[0]):
            psi[i] = 0
        return norm

    @_inline
    def _project_out(feat_grad, psi, g, norm):
        """feat_grad = (g − ψ(ψ·g))/‖x‖ over the real features: the encoding's backward."""
        if norm <= 0:
            for i in range(feat_grad.shape[0]):
                feat_grad[i] = 0
            return
        n_feat = feat_grad.shape[0]
        overlap = _dot(psi[:n_feat], g[:n_feat])
        feat_grad[0] = 1.0 / norm
        scale = feat_grad[0]
        for i in range(feat_grad.shape[0]):
            feat_grad[i] = (g[i] - overlap * psi[i]) * scale

    # ---------------------------------------------------------------- ⟨Z⟩, ⟨X⟩
    @_inline
    def _zx_one(row, n, z, x, blk):
        """z[k] = ⟨Z_k⟩, x[k] = ⟨X_k⟩ of one real state ``row`` (2^n, n ≥ 3)."""
        dim = row.shape[0]
        nblk = dim >> 3
        blocks = row.reshape(nblk, 8)
        z0 = z1 = z2 = x0 = x1 = x2 = row[0] - row[0]
        # The three lowest wires pair amplitudes inside blocks of 8; blk keeps each
        # block's probability for the upper wires' ⟨Z⟩ (an 8× shorter array).
        for j in range(nblk):
            v = blocks[j]
            v0, v1, v2, v3 = v[0], v[1], v[2], v[3]
            v4, v5, v6, v7 = v[4], v[5], v[6], v[7]
            x2 += v0 * v1 + v2 * v3 + v4 * v5 + v6 * v7
            x1 += v0 * v2 + v1 * v3 + v4 * v6 + v5 * v7
            x0 += v0 * v4 + v1 * v5 + v2 * v6 + v3 * v7
            p01 = v0 * v0 + v1 * v1
            p23 = v2 * v2 + v3 * v3
            p45 = v4 * v4 + v5 * v5
            p67 = v6 * v6 + v7 * v7
            z2 += (v0 * v0 - v1 * v1) + (v2 * v2 - v3 * v3)
            z2 += (v4 * v4 - v5 * v5) + (v6 * v6 - v7 * v7)
            z1 += (p01 - p23) + (p45 - p67)
            z0 += (p01 + p23) - (p45 + p67)
            blk[j] = (p01 + p23) + (p45 + p67)
        z[n - 3], z[n - 2], z[n - 1] = z0, z1, z2
        x[n - 3], x[n - 2], x[n - 1] = x0 + x0, x1 + x1, x2 + x2
        for k in range(n - 3):
            half = 1 << (n - 1 - k)
            if half == 8:
                x[k] = _xor_dot(row, np.uint64(8))
            elif half == 16:
                x[k] = _xor_dot(row, np.uint64(16))
            else:
                acc = row[0] - row[0]
                for base in range(0, dim, 2 * half):
                    acc += _dot(row[base : base + half], row[base + half : base + 2 * half])
                x[k] = acc + acc
        # ⟨Z⟩ of the upper wires: fold the block probabilities one wire at a time, from
        # the lowest upper wire (whose bit is the lowest bit of the block index) up.
        size = nblk
        for k in range(n - 4, -1, -1):
            size >>= 1
            acc = row[0] - row[0]
            for j in range(size):
                a = blk[2 * j]
                c = blk[2 * j + 1]
                acc += a - c
                blk[j] = a + c
            z[k] = acc

    @_inline
    def _zx_grad_one(row, n, gz, gx, g, blk):
        """g = Σ_k (gz_k Z_k + gx_k X_k) row, i.e. ∂/∂ψ of Σ_k gz_k⟨Z_k⟩ + gx_k⟨X_k⟩ when
        the caller passes doubled gz, gx."""
        dim = row.shape[0]
        nblk = dim >> 3
        # Diagonal part Σ_k gz_k (−1)^bit_k(i), split as top(i >> 3) + low(i & 7).
        blk[0] = 0
        size = 1
        for k in range(n - 3):
            coef = gz[k]
            for j in range(size - 1, -1, -1):
                base = blk[j]
                blk[2 * j] = base + coef
                blk[2 * j + 1] = base - coef
            size *= 2
        a0, a1, a2 = gz[n - 3], gz[n - 2], gz[n - 1]
        c0, c1, c2 = gx[n - 3], gx[n - 2], gx[n - 1]
        d0, d1, d2, d3 = a0 + a1 + a2, a0 + a1 - a2, a0 - a1 + a2, a0 - a1 - a2
        d4, d5, d6, d7 = -a0 + a1 + a2, -a0 + a1 - a2, -a0 - a1 + a2, -a0 - a1 - a2
        blocks = row.reshape(nblk, 8)
        gblocks = g.reshape(nblk, 8)
        # From n = 5 on, the two wires just above the lowest three (partners 8 and 16
        # amplitudes away: the neighbouring blocks j^1 and j^2) get one blockwise sweep
        # of their own; as segment passes their 8- and 16-long loops cost more.
        fold = n >= 5
        e1 = gx[n - 4] if fold else gx[0] - gx[0]
        e2 = gx[n - 5] if fold else gx[0] - gx[0]
        for j in range(nblk):
            v = blocks[j]
            o = gblocks[j]
            t = blk[j]
            v0, v1, v2, v3 = v[0], v[1], v[2], v[3]
            v4, v5, v6, v7 = v[4], v[5], v[6], v[7]
            o[0] = (t + d0) * v0 + c2 * v1 + c1 * v2 + c0 * v4
            o[1] = (t + d1) * v1 + c2 * v0 + c1 * v3 + c0 * v5
            o[2] = (t + d2) * v2 + c2 * v3 + c1 * v0 + c0 * v6
            o[3] = (t + d3) * v3 + c2 * v2 + c1 * v1 + c0 * v7
            o[4] = (t + d4) * v4 + c2 * v5 + c1 * v6 + c0 * v0
            o[5] = (t + d5) * v5 + c2 * v4 + c1 * v7 + c0 * v1
            o[6] = (t + d6) * v6 + c2 * v7 + c1 * v4 + c0 * v2
            o[7] = (t + d7) * v7 + c2 * v6 + c1 * v5 + c0 * v3
        if fold:
            for j in range(nblk):
                o = gblocks[j]
                p = blocks[j ^ 1]
                q = blocks[j ^ 2]
                o[0] += e1 * p[0] + e2 * q[0]
                o[1] += e1 * p[1] + e2 * q[1]
                o[2] += e1 * p[2] + e2 * q[2]
                o[3] += e1 * p[3] + e2 * q[3]
                o[4] += e1 * p[4] + e2 * q[4]
                o[5] += e1 * p[5] + e2 * q[5]
                o[6] += e1 * p[6] + e2 * q[6]
                o[7] += e1 * p[7] + e2 * q[7]
        # Off-diagonal part of the remaining upper wires, up to four wires per pass over
        # g (each output segment gathers its partners from ψ): a pass per wire would move
        # g through the cache four times as often. Segments shorter than 64 make the
        # loops too short, so the last of these wires go one by one.
        top = n - 5 if fold else n - 3
        k0 = 0
        while k0 < top:
            count = min(4, top - k0)
            while count > 1 and (1 << (n - k0 - count)) < 64:
                count -= 1
            if count == 4:
                _flip4(row, g, n, k0, gx[k0], gx[k0 + 1], gx[k0 + 2], gx[k0 + 3])
            elif count == 3:
                _flip3(row, g, n, k0, gx[k0], gx[k0 + 1], gx[k0 + 2])
            elif count == 2:
                _flip2(row, g, n, k0, gx[k0], gx[k0 + 1])
            else:
                _flip1(row, g, n, k0, gx[k0])
            k0 += count

    @_inline
    def _flip1(row, g, n, k, c0):
        h = 1 << (n - 1 - k)
        for base in range(0, row.shape[0], 2 * h):
            _axpy(g[base : base + h], c0, row[base + h : base + 2 * h])
            _axpy(g[base + h : base + 2 * h], c0, row[base : base + h])

    @_inline
    def _flip2(row, g, n, k, c0, c1):
        h = 1 << (n - 2 - k)
        for base in range(0, row.shape[0], 4 * h):
            for s in range(4):
                o, p0, p1 = base + s * h, base + (s ^ 2) * h, base + (s ^ 1) * h
                _axpy2(g[o : o + h], c0, row[p0 : p0 + h], c1, row[p1 : p1 + h])

    @_inline
    def _flip3(row, g, n, k, c0, c1, c2):
        h = 1 << (n - 3 - k)
        for base in range(0, row.shape[0], 8 * h):
            for s in range(8):
                o, p0 = base + s * h, base + (s ^ 4) * h
                p1, p2 = base + (s ^ 2) * h, base + (s ^ 1) * h
                _axpy3(
                    g[o : o + h], c0, row[p0 : p0 + h], c1, row[p1 : p1 + h],
                    c2, row[p2 : p2 + h],
                )

    @_inline
    def _flip4(row, g, n, k, c0, c1, c2, c3):
        h = 1 << (n - 4 - k)
        for base in range(0, row.shape[0], 16 * h):
            for s in range(16):
                o, p0, p1 = base + s * h, base + (s ^ 8) * h, base + (s ^ 4) * h
                p2, p3 = base + (s ^ 2) * h, base + (s ^ 1) * h
                _axpy4(
                    g[o : o + h], c0, row[p0 : p0 + h], c1, row[p1 : p1 + h],
                    c2, row[p2 : p2 + h], c3, row[p3 : p3 + h],
                )

    @_jit
    def _zx_rows(state, n, z, x, blk):
        for b in range(state.shape[0]):
            _zx_one(state[b], n, z[b], x[b], blk)

    @_jit
    def _zx_grad_rows(state, n, gz, gx, grad, blk):
        for b in range(state.shape[0]):
            _zx_grad_one(state[b], n, gz[b], gx[b], grad[b], blk)

    @_jit
    def _encoded_zx_rows(feats, n, z, x, norms, psi, blk):
        for b in range(feats.shape[0]):
            norms[b] = _encode_row(feats[b], psi)
            if norms[b] < 0:
                return  # the caller takes the torch path for the whole batch
            _zx_one(psi, n, z[b], x[b], blk)

    @_jit
    def _encoded_zx_grad_rows(feats, n, gz, gx, norms, grad, psi, g, blk):
        for b in range(feats.shape[0]):
            _encode_row(feats[b], psi)
            _zx_grad_one(psi, n, gz[b], gx[b], g, blk)
            _project_out(grad[b], psi, g, norms[b])

    # ---------------------------------------------------------------- one-qubit layer
    @_inline
    def _low3(v, m):
        """Applies the matrices m[0], m[1], m[2] of the three lowest wires to each 8-block."""
        for j in range(v.shape[0] >> 3):
            i = 8 * j
            a0, a1, a2, a3 = v[i], v[i + 1], v[i + 2], v[i + 3]
            a4, a5, a6, a7 = v[i + 4], v[i + 5], v[i + 6], v[i + 7]
            p, q, r, s = m[0, 0, 0], m[0, 0, 1], m[0, 1, 0], m[0, 1, 1]
            a0, a4 = p * a0 + q * a4, r * a0 + s * a4
            a1, a5 = p * a1 + q * a5, r * a1 + s * a5
            a2, a6 = p * a2 + q * a6, r * a2 + s * a6
            a3, a7 = p * a3 + q * a7, r * a3 + s * a7
            p, q, r, s = m[1, 0, 0], m[1, 0, 1], m[1, 1, 0], m[1, 1, 1]
            a0, a2 = p * a0 + q * a2, r * a0 + s * a2
            a1, a3 = p * a1 + q * a3, r * a1 + s * a3
            a4, a6 = p * a4 + q * a6, r * a4 + s * a6
            a5, a7 = p * a5 + q * a7, r * a5 + s * a7
            p, q, r, s = m[2, 0, 0], m[2, 0, 1], m[2, 1, 0], m[2, 1, 1]
            a0, a1 = p * a0 + q * a1, r * a0 + s * a1
            a2, a3 = p * a2 + q * a3, r * a2 + s * a3
            a4, a5 = p * a4 + q * a5, r * a4 + s * a5
            a6, a7 = p * a6 + q * a7, r * a6 + s * a7
            v[i], v[i + 1], v[i + 2], v[i + 3] = a0, a1, a2, a3
            v[i + 4], v[i + 5], v[i + 6], v[i + 7] = a4, a5, a6, a7

    @_inline
    def _low3_undo(v, lam, m, gm):
        """Undoes :func:`_low3` on the state v and on the adjoint lam (with Mᵀ: the
        matrices are orthogonal) and adds Σ λ sᵀ to gm[w] for each of the three wires
        (λ after the gate, s the state before it). Written out wire by wire, like
        :func:`_low3`, so that the block's 16 values stay in registers."""
        zero = v[0] - v[0]
        g = np.zeros((3, 4), v.dtype)
        t00 = t01 = t02 = t03 = t10 = t11 = t12 = t13 = t20 = t21 = t22 = t23 = zero
        for j in range(v.shape[0] >> 3):
            i = 8 * j
            a0, a1, a2, a3 = v[i], v[i + 1], v[i + 2], v[i + 3]
            a4, a5, a6, a7 = v[i + 4], v[i + 5], v[i + 6], v[i + 7]
            l0, l1, l2, l3 = lam[i], lam[i + 1], lam[i + 2], lam[i + 3]
            l4, l5, l6, l7 = lam[i + 4], lam[i + 5], lam[i + 6], lam[i + 7]
            # wire n−1: pairs (0,1) (2,3) (4,5) (6,7)
            p, q, r, s = m[2, 0, 0], m[2, 0, 1], m[2, 1, 0], m[2, 1, 1]
            a0, a1 = p * a0 + r * a1, q * a0 + s * a1
            a2, a3 = p * a2 + r * a3, q * a2 + s * a3
            a4, a5 = p * a4 + r * a5, q * a4 + s * a5
            a6, a7 = p * a6 + r * a7, q * a6 + s * a7
            t20 += (l0 * a0 + l2 * a2) + (l4 * a4 + l6 * a6)
            t21 += (l0 * a1 + l2 * a3) + (l4 * a5 + l6 * a7)
            t22 += (l1 * a0 + l3 * a2) + (l5 * a4 + l7 * a6)
            t23 += (l1 * a1 + l3 * a3) + (l5 * a5 + l7 * a7)
            l0, l1 = p * l0 + r * l1, q * l0 + s * l1
            l2, l3 = p * l2 + r * l3, q * l2 + s * l3
            l4, l5 = p * l4 + r * l5, q * l4 + s * l5
            l6, l7 = p * l6 + r * l7, q * l6 + s * l7
            # wire n−2: pairs (0,2) (1,3) (4,6) (5,7)
            p, q, r, s = m[1, 0, 0], m[1, 0, 1], m[1, 1, 0], m[1, 1, 1]
            a0, a2 = p * a0 + r * a2, q * a0 + s * a2
            a1, a3 = p * a1 + r * a3, q * a1 + s * a3
            a4, a6 = p * a4 + r * a6, q * a4 + s * a6
            a5, a7 = p * a5 + r * a7, q * a5 + s * a7
            t10 += (l0 * a0 + l1 * a1) + (l4 * a4 + l5 * a5)
            t11 += (l0 * a2 + l1 * a3) + (l4 * a6 + l5 * a7)
            t12 += (l2 * a0 + l3 * a1) + (l6 * a4 + l7 * a5)
            t13 += (l2 * a2 + l3 * a3) + (l6 * a6 + l7 * a7)
            l0, l2 = p * l0 + r * l2, q * l0 + s * l2
            l1, l3 = p * l1 + r * l3, q * l1 + s * l3
            l4, l6 = p * l4 + r * l6, q * l4 + s * l6
            l5, l7 = p * l5 + r * l7, q * l5 + s * l7
            # wire n−3: pairs (0,4) (1,5) (2,6) (3,7)
            p, q, r, s = m[0, 0, 0], m[0, 0, 1], m[0, 1, 0], m[0, 1, 1]
            a0, a4 = p * a0 + r * a4, q * a0 + s * a4
            a1, a5 = p * a1 + r * a5, q * a1 + s * a5
            a2, a6 = p * a2 + r * a6, q * a2 + s * a6
            a3, a7 = p * a3 + r * a7, q * a3 + s * a7
            t00 += (l0 * a0 + l1 * a1) + (l2 * a2 + l3 * a3)
            t01 += (l0 * a4 + l1 * a5) + (l2 * a6 + l3 * a7)
            t02 += (l4 * a0 + l5 * a1) + (l6 * a2 + l7 * a3)
            t03 += (l4 * a4 + l5 * a5) + (l6 * a6 + l7 * a7)
            l0, l4 = p * l0 + r * l4, q * l0 + s * l4
            l1, l5 = p * l1 + r * l5, q * l1 + s * l5
            l2, l6 = p * l2 + r * l6, q * l2 + s * l6
            l3, l7 = p * l3 + r * l7, q * l3 + s * l7
            v[i], v[i + 1], v[i + 2], v[i + 3] = a0, a1, a2, a3
            v[i + 4], v[i + 5], v[i + 6], v[i + 7] = a4, a5, a6, a7
            lam[i], lam[i + 1], lam[i + 2], lam[i + 3] = l0, l1, l2, l3
            lam[i + 4], lam[i + 5], lam[i + 6], lam[i + 7] = l4, l5, l6, l7
        g[0, 0], g[0, 1], g[0, 2], g[0, 3] = t00, t01, t02, t03
        g[1, 0], g[1, 1], g[1, 2], g[1, 3] = t10, t11, t12, t13
        g[2, 0], g[2, 1], g[2, 2], g[2, 3] = t20, t21, t22, t23
        for w in range(3):
            gm[w, 0, 0] += g[w, 0]
            gm[w, 0, 1] += g[w, 1]
            gm[w, 1, 0] += g[w, 2]
            gm[w, 1, 1] += g[w, 3]

    @_inline
    def _layer_forward(src, dst, n, mats):
        """dst = (⊗_w mats[w]) src for all n wires; src is used as scratch."""
        dim = src.shape[0]
        # Upper wires out of place, alternating between the two buffers so that the
        # last one lands in dst; then the three lowest wires in place, blockwise.
        cur, other = src, dst
        if (n - 3) % 2 == 0:
            dst[:] = src
            cur, other = dst, src
        for w in range(n - 3):
            half = 1 << (n - 1 - w)
            m = mats[w]
            for base in range(0, dim, 2 * half):
                lo = cur[base : base + half]
                hi = cur[base + half : base + 2 * half]
                _mix(other[base : base + half], lo, hi, m[0, 0], m[0, 1])
                _mix(other[base + half : base + 2 * half], lo, hi, m[1, 0], m[1, 1])
            cur, other = other, cur
        _low3(cur, mats[n - 3 :])

    @_inline
    def _measure(phi, signs_t, out, p):
        for i in range(phi.shape[0]):
            p[i] = phi[i] * phi[i]
        for k in range(signs_t.shape[0]):
            out[k] = _dot(signs_t[k], p)

    @_inline
    def _layer_backward(phi, n, mats, signs_t, gout, gm, lam, phi2, lam2):
        """From the evolved state phi and the doubled upstream gout, undoes the layer
        and adds ∂L/∂mats to gm. Returns the buffers holding (ψ, ∂L/∂ψ): (phi, lam)
        when n − 3 is even, else (phi2, lam2)."""
        dim = phi.shape[0]
        for i in range(dim):
            lam[i] = 0
        for k in range(signs_t.shape[0]):
            _axpy(lam, gout[k], signs_t[k])
        for i in range(dim):
            lam[i] *= phi[i]
        _low3_undo(phi, lam, mats[n - 3 :], gm[n - 3 :])
        cur, cur_lam, other, other_lam = phi, lam, phi2, lam2
        for w in range(n - 4, -1, -1):
            half = 1 << (n - 1 - w)
            m = mats[w]
            g00 = g01 = g10 = g11 = phi[0] - phi[0]
            for base in range(0, dim, 2 * half):
                lo, hi = slice(base, base + half), slice(base + half, base + 2 * half)
                _mix(other[lo], cur[lo], cur[hi], m[0, 0], m[1, 0])
                _mix(other[hi], cur[lo], cur[hi], m[0, 1], m[1, 1])
                r00, r01, r10, r11 = _outer(cur_lam[lo], cur_lam[hi], other[lo], other[hi])
                g00 += r00
                g01 += r01
                g10 += r10
                g11 += r11
                _mix(other_lam[lo], cur_lam[lo], cur_lam[hi], m[0, 0], m[1, 0])
                _mix(other_lam[hi], cur_lam[lo], cur_lam[hi], m[0, 1], m[1, 1])
            gm[w, 0, 0] += g00
            gm[w, 0, 1] += g01
            gm[w, 1, 0] += g10
            gm[w, 1, 1] += g11
            cur, other = other, cur
            cur_lam, other_lam = other_lam, cur_lam
        return cur, cur_lam

    @_jit
    def _encoded_layer_rows(feats, n, mats, signs_t, out, norms, work, tmp):
        for b in range(feats.shape[0]):
            norms[b] = _encode_row(feats[b], tmp)
            if norms[b] < 0:
                return
            _layer_forward(tmp, work[b], n, mats)
            _measure(work[b], signs_t, out[b], tmp)

    @_jit
    def _encoded_layer_grad_rows(
        work, n, mats, signs_t, gout, norms, grad, gm, phi, lam, phi2, lam2
    ):
        for b in range(work.shape[0]):
            phi[:] = work[b]
            psi, dpsi = _layer_backward(phi, n, mats, signs_t, gout[b], gm, lam, phi2, lam2)
            _project_out(grad[b], psi, dpsi, norms[b])


# ---------------------------------------------------------------- any circuit
# Instruction kinds of a program for the general kernels (rows of an int64 [G, 3]
# array: kind, wire, table index): a real or complex one-qubit matrix on a wire
# (mats[index]), a signed permutation of the basis (perms[index], signs[index]: a run of
# CNOTs and CZs, or the X/CNOT tail of the circuit), or a diagonal ±1 (signs[index]: a run
# of CZs alone, which permutes nothing), or a diagonal phase (phase tables [index]: the
# RZ angles of every wire of a layer at once, ψ_j ← e^{−iφ_j/2}ψ_j with
# φ_j = Σ_w β_w (1 − 2·bit_w(j)); its backward gives ∂L/∂β for every wire in one fold).
OP_REAL, OP_COMPLEX, OP_PERM, OP_SIGN, OP_PHASE = 0, 1, 2, 3, 4

#: Examples the general kernel evolves together, interleaved (see :func:`general_forward`),
#: forward and backward alike: the final states are saved in that layout (read at each
#: forward; the tests run 8 and 16). Measured for the backward in one process,
#: alternating, batch 32, n = 15 (session 23): 16 rows are 0–4 % slower than 8 at D = 1
#: and 4–17 % faster at D = 3–5 (a phase's and the lowest wires' loops get twice as many
#: values per row), once the lane conversions are blocked (one lane at a time, 16 passes
#: over 2 MiB left L2 and cost 2× per value what 8 rows do).
LANES = 16
# Values per array a gate's loop handles before moving on to the next stretch (a gate on
# a high wire has halves of 1 MiB at L = 16; short stretches bound the reuse distance).
_CHUNK = 512
# The adjoint step of a complex gate runs in place when the partner halves are at least
# this many values long; below it the in-place loop's eight reductions per stretch cost
# more than they save, and the out-of-place loops are used (measured, one thread, L = 8,
# µs per example in place / out of place: 11 / 20 at 4,096 values, 19 / 21 at 128,
# 49 / 29 at 32, 160 / 61 at 8).
_UNDO_COMPLEX_IN_PLACE = 128

if numba is not None:

    @_inline
    def _mix4(out, a, b, c, d, p, q, r, t):
        """out = p·a + q·b + r·c + t·d (one store per loop, so that LLVM vectorises it)."""
        for i in range(out.shape[0]):
            out[i] = (p * a[i] + q * b[i]) + (r * c[i] + t * d[i])

    @_inline
    def _mix_c(out_r, out_i, ar, ai, cr, ci, pr, pi, qr, qi):
        """out = p·a + q·c in complex arithmetic on split real/imaginary arrays."""
        _mix4(out_r, ar, ai, cr, ci, pr, -pi, qr, -qi)
        _mix4(out_i, ai, ar, ci, cr, pr, pi, qr, qi)

    @_inline
    def _rotate_real(x0, x1, m00, m01, m10, m11):
        """(x0, x1) ← M (x0, x1), elementwise on two halves, in place."""
        for i in range(x0.shape[0]):
            a, c = x0[i], x1[i]
            x0[i] = m00 * a + m01 * c
            x1[i] = m10 * a + m11 * c

    @_inline
    def _pairs_real(s, lo, h, m00, m01, m10, m11):
        """The 2×2 matrix on the pairs (lo + i, lo + i + h), i < h, in place (h a literal
        after inlining, so that the short loop is unrolled)."""
        for i in range(lo, lo + h):
            a, c = s[i], s[i + h]
            s[i] = m00 * a + m01 * c
            s[i + h] = m10 * a + m11 * c

    @_inline
    def _apply_real(s, h, m00, m01, m10, m11):
        """s ← M s in place on the wire whose partner amplitudes are h apart."""
        dim = s.shape[0]
        if h >= 8:
            for base in range(0, dim, 2 * h):
                for c in range(base, base + h, _CHUNK):
                    e = min(c + _CHUNK, base + h)
                    _rotate_real(s[c:e], s[c + h : e + h], m00, m01, m10, m11)
        elif h == 4:
            for base in range(0, dim, 8):
                _pairs_real(s, base, 4, m00, m01, m10, m11)
        elif h == 2:
            for base in range(0, dim, 4):
                _pairs_real(s, base, 2, m00, m01, m10, m11)
        else:
            for base in range(0, dim, 2):
                _pairs_real(s, base, 1, m00, m01, m10, m11)

    @_inline
    def _rotate_complex(x0r, x0i, x1r, x1i, p0r, p0i, q0r, q0i, p1r, p1i, q1r, q1i):
        """(x0, x1) ← [[p0, q0], [p1, q1]] (x0, x1) in complex arithmetic on split
        real/imaginary halves, in place."""
        for i in range(x0r.shape[0]):
            ar, ai, cr, ci = x0r[i], x0i[i], x1r[i], x1i[i]
            x0r[i] = (p0r * ar - p0i * ai) + (q0r * cr - q0i * ci)
            x0i[i] = (p0r * ai + p0i * ar) + (q0r * ci + q0i * cr)
            x1r[i] = (p1r * ar - p1i * ai) + (q1r * cr - q1i * ci)
            x1i[i] = (p1r * ai + p1i * ar) + (q1r * ci + q1i * cr)

    @_inline
    def _apply_complex(sr, si, h, m):
        """(sr, si) ← M (sr, si) in place for a complex matrix m[a, b, (re, im)]."""
        dim = sr.shape[0]
        p0r, p0i, q0r, q0i = m[0, 0, 0], m[0, 0, 1], m[0, 1, 0], m[0, 1, 1]
        p1r, p1i, q1r, q1i = m[1, 0, 0], m[1, 0, 1], m[1, 1, 0], m[1, 1, 1]
        if h >= 8:
            for base in range(0, dim, 2 * h):
                for c in range(base, base + h, _CHUNK):
                    e = min(c + _CHUNK, base + h)
                    lo, hi = slice(c, e), slice(c + h, e + h)
                    _rotate_complex(sr[lo], si[lo], sr[hi], si[hi],
                                    p0r, p0i, q0r, q0i, p1r, p1i, q1r, q1i)
        elif h == 4:
            for base in range(0, dim, 8):
                _pairs_complex(sr, si, base, 4, p0r, p0i, q0r, q0i, p1r, p1i, q1r, q1i)
        elif h == 2:
            for base in range(0, dim, 4):
                _pairs_complex(sr, si, base, 2, p0r, p0i, q0r, q0i, p1r, p1i, q1r, q1i)
        else:
            for base in range(0, dim, 2):
                _pairs_complex(sr, si, base, 1, p0r, p0i, q0r, q0i, p1r, p1i, q1r, q1i)

    @_inline
    def _pairs_complex(sr, si, lo, h, p0r, p0i, q0r, q0i, p1r, p1i, q1r, q1i):
        for i in range(lo, lo + h):
            ar, ai, cr, ci = sr[i], si[i], sr[i + h], si[i + h]
            sr[i] = (p0r * ar - p0i * ai) + (q0r * cr - q0i * ci)
            si[i] = (p0r * ai + p0i * ar) + (q0r * ci + q0i * cr)
            sr[i + h] = (p1r * ar - p1i * ai) + (q1r * cr - q1i * ci)
            si[i + h] = (p1r * ai + p1i * ar) + (q1r * ci + q1i * cr)

    @_inline
    def _lane_permute(src, dst, index, sign, lanes):
        """dst[j] = sign[j]·src[index[j]] for each example of the group (rows of ``lanes``
        values): one pass for a run of CNOTs/CZs (or X), contiguous rows, no gathers."""
        for j in range(index.shape[0]):
            s = sign[j]
            k = index[j] * lanes
            a = src[k : k + lanes]
            o = dst[j * lanes : (j + 1) * lanes]
            for i in range(lanes):
                o[i] = s * a[i]

    @_inline
    def _lane_unpermute(src, dst, index, sign, lanes):
        """The inverse of :func:`_lane_permute` (its transpose): dst[index[j]] = sign[j]·src[j]."""
        for j in range(index.shape[0]):
            s = sign[j]
            k = index[j] * lanes
            a = src[j * lanes : (j + 1) * lanes]
            o = dst[k : k + lanes]
            for i in range(lanes):
                o[i] = s * a[i]

    @_inline
    def _lane_sign(v, sign, lanes):
        """v[j] *= sign[j] in place (a diagonal ±1: its own inverse and transpose)."""
        for j in range(sign.shape[0]):
            s = sign[j]
            o = v[j * lanes : (j + 1) * lanes]
            for i in range(lanes):
                o[i] *= s

    @_inline
    def _lane_phase(re, im, pr, pi, lanes, real_before):
        """(re, im)[j] ← (pr + i·pi)[j]·(re, im)[j] for every example of the group (one
        phase per amplitude, shared by the lanes); with ``real_before`` the imaginary
        parts are taken as zero (the first complex instruction)."""
        for j in range(pr.shape[0]):
            c, t = pr[j], pi[j]
            a = re[j * lanes : (j + 1) * lanes]
            b = im[j * lanes : (j + 1) * lanes]
            if real_before:
                for i in range(lanes):
                    x = a[i]
                    a[i] = x * c
                    b[i] = x * t
            else:
                for i in range(lanes):
                    x, y = a[i], b[i]
                    a[i] = x * c - y * t
                    b[i] = x * t + y * c

    @_inline
    def _lane_unphase(sr, si, lr, li, pr, pi, lanes, u, with_grad):
        """Un-applies a phase to the state (sr, si) and to λ (lr, li) in place; with
        ``with_grad``, first u_j = Σ_lanes Im(conj(λ_j)·ψ_j) (the same before and after:
        both carry the phase)."""
        for j in range(pr.shape[0]):
            c, t = pr[j], pi[j]
            lo, hi = j * lanes, (j + 1) * lanes
            a, b, x, y = sr[lo:hi], si[lo:hi], lr[lo:hi], li[lo:hi]
            if with_grad:
                acc = c - c
                for i in range(lanes):
                    acc += x[i] * b[i] - y[i] * a[i]
                u[j] = acc
            for i in range(lanes):
                p, q = a[i], b[i]
                a[i] = p * c + q * t
                b[i] = q * c - p * t
                p, q = x[i], y[i]
                x[i] = p * c + q * t
                y[i] = q * c - p * t

    @_inline
    def _scaled_to_lanes(feats, state, lanes, scale, stop, rows):
        """state[r(j)·L + l] = feats[l, j]·scale[l] for j < stop (a multiple of 16), r(j)
        = j, or rows[j] when ``rows`` is an array (the Hadamard-frame kernel's scatter), in
        blocks of 16 amplitudes: a block's L×16 values stay in L1 while they are
        scattered (2× faster than one example at a time across the whole group, measured
        at L = 16; a literal ``lanes`` and 16-long loops let LLVM unroll them: 230 → 166
        µs per 16 examples at n = 15 against a loop bound of min(j0 + 16, stop))."""
        for j0 in range(0, stop, 16):
            for lane in range(lanes):
                row = feats[lane]
                c = scale[lane]
                for j in range(j0, j0 + 16):
                    at = j if rows is None else rows[j]
                    state[at * lanes + lane] = row[j] * c

    @_inline
    def _encode_lanes(feats, state, lanes, scale, rows):
        """The amplitude encoding of a group straight into the lane layout: state[r(j)·L
        + l] = feats[l, j]·scale[l] (scale = 1/‖x‖ in the features' dtype, as
        :func:`_encode_row`; r(j) = j, or rows[j] when ``rows`` is an array), zeros in
        every other row."""
        n_feat = feats.shape[1]
        if rows is not None:
            for i in range(state.shape[0]):
                state[i] = 0
        whole = n_feat - n_feat % 16
        if lanes == 16 and rows is not None:
            for j0 in range(0, whole, 16):
                _scatter_tile(feats, j0, scale, state, rows)
        elif lanes == 16:
            _scaled_to_lanes(feats, state, 16, scale, whole, rows)
        elif lanes == 8:
            _scaled_to_lanes(feats, state, 8, scale, whole, rows)
        else:
            whole = 0
        for j in range(whole, n_feat):
            at = j if rows is None else rows[j]
            for lane in range(lanes):
                state[at * lanes + lane] = feats[lane, j] * scale[lane]
        if rows is None:
            for i in range(n_feat * lanes, state.shape[0]):
                state[i] = 0

    @_inline
    def _encode_group(feats, norms, state, lanes, scale, rows):
        """Encodes a group of rows into the lane layout (:func:`_encode_lanes`) and their
        norms into ``norms`` (scale: scratch of ``lanes`` values); all-zero rows become
        |0…0⟩ (in row r(0): not 0 when the scatter has an X in it). Returns False, at the
        first row the kernels leave to the torch encoder (:func:`_row_norm`), without
        encoding."""
        for b in range(lanes):
            norm = _row_norm(feats[b])
            norms[b] = norm
            if norm < 0:
                return False
            scale[b] = 1.0 / norm if norm > 0 else 0.0
        _encode_lanes(feats, state, lanes, scale, rows)
        zero_row = 0 if rows is None else rows[0]
        for b in range(lanes):
            if norms[b] == 0:
                state[zero_row * lanes + b] = 1
        return True

    @_inline
    def _scaled_from_lanes(grad, feats, lam, lanes, shift, scale, stop, rows):
        """grad[l, j] = (lam[r(j)·L + l] − shift[l]·feats[l, j])·scale[l] for j < stop (a
        multiple of 16; r as in :func:`_scaled_to_lanes`), in blocks of 16 amplitudes."""
        for j0 in range(0, stop, 16):
            for lane in range(lanes):
                out = grad[lane]
                row = feats[lane]
                t = shift[lane]
                c = scale[lane]
                for j in range(j0, j0 + 16):
                    at = j if rows is None else rows[j]
                    out[j] = (lam[at * lanes + lane] - t * row[j]) * c

    @_inline
    def _project_out_lanes(grad, feats, psi, lam, norms, lanes, shift, scale):
        """:func:`_project_out` for a group whose ψ₀ (``psi``, the state the backward sweep
        arrives at) and λ₀ (``lam``) are in the lane layout: grad[l] = (λ − ψ(ψ·λ))/‖x‖
        over the features, ψ·λ summed in the lane layout, the ψ of the second term taken
        from the features (x/‖x‖); zero for all-zero rows. No row layout in between."""
        n_feat = feats.shape[1]
        for lane in range(lanes):
            shift[lane] = 0
        for j in range(n_feat):
            a = psi[j * lanes : (j + 1) * lanes]
            c = lam[j * lanes : (j + 1) * lanes]
            for lane in range(lanes):
                shift[lane] += a[lane] * c[lane]
        _project_out_given(grad, feats, lam, norms, lanes, shift, scale, None)

    @_inline
    def _project_out_given(grad, feats, lam, norms, lanes, shift, scale, rows):
        """The rest of :func:`_project_out_lanes` once shift[l] holds ψ₀·λ₀ of lane l
        (it is overwritten; scale is scratch of ``lanes`` values); amplitude j of λ₀ in
        row r(j) (as in :func:`_scaled_to_lanes`)."""
        n_feat = feats.shape[1]
        for lane in range(lanes):
            norm = norms[lane]
            scale[lane] = 1.0 / norm if norm > 0 else 0.0
            shift[lane] = shift[lane] * scale[lane]  # (ψ·λ)/‖x‖: ψ_j = x_j/‖x‖
        whole = n_feat - n_feat % 16
        if lanes == 16 and rows is not None:
            for j0 in range(0, whole, 16):
                _gather_tile(grad, feats, lam, j0, shift, scale, rows)
        elif lanes == 16:
            _scaled_from_lanes(grad, feats, lam, 16, shift, scale, whole, rows)
        elif lanes == 8:
            _scaled_from_lanes(grad, feats, lam, 8, shift, scale, whole, rows)
        else:
            whole = 0
        for lane in range(lanes):
            out, row = grad[lane], feats[lane]
            t, c = shift[lane], scale[lane]
            for j in range(whole, n_feat):
                at = j if rows is None else rows[j]
                out[j] = (lam[at * lanes + lane] - t * row[j]) * c
            if norms[lane] <= 0:
                for j in range(n_feat):
                    out[j] = 0

    @_inline
    def _z_weights_lanes(g, n, d, lanes, coef):
        """d[j·L + l] = Σ_k g[l, k]·(1 − 2·bit_k(j)) for every lane l of a group (lane
        layout), built by doubling from the top wire down; coef holds ``lanes`` values."""
        for lane in range(lanes):
            d[lane] = 0
        size = 1
        for k in range(n):
            for lane in range(lanes):
                coef[lane] = g[lane, k]
            for i in range(size - 1, -1, -1):
                base = d[i * lanes : (i + 1) * lanes]
                lo = d[2 * i * lanes : (2 * i + 1) * lanes]  # base itself when i = 0
                hi = d[(2 * i + 1) * lanes : (2 * i + 2) * lanes]
                for lane in range(lanes):
                    b = base[lane]
                    c = coef[lane]
                    lo[lane] = b + c
                    hi[lane] = b - c
            size *= 2

    @_inline
    def _z_tables(g, n, top, low, lanes, coef):
        """top ← Σ_k ±g_k over the upper ⌈n/2⌉ bits of j, low ← over the lower ⌊n/2⌋ bits
        (:func:`_z_weights_lanes`; d_j = top[j >> low_bits] + low[j & mask]); returns
        low_bits."""
        low_bits = n // 2
        high_bits = n - low_bits
        _z_weights_lanes(g[:, :high_bits], high_bits, top, lanes, coef)
        _z_weights_lanes(g[:, high_bits:], low_bits, low, lanes, coef)
        return low_bits

    @_inline
    def _lambda_lanes(g, n, re, im, lr, li, lanes, top, low, coef, complex_):
        """λ = (Σ_k g_k Z_k)ψ for every lane of a group (lane layout; the imaginary parts
        im → li only when ``complex_``): d_j = Σ_k ±g_k as the sum of a table over the
        upper bits of j and one over the lower bits (both in L1, by
        :func:`_z_weights_lanes`), so that the 2^n·L values of d are never stored. top
        and low hold 2^⌈n/2⌉·L and 2^⌊n/2⌋·L values."""
        low_bits = _z_tables(g, n, top, low, lanes, coef)
        count = 1 << low_bits
        for hi in range(1 << (n - low_bits)):
            t = top[hi * lanes : (hi + 1) * lanes]
            for lo in range(count):
                u = low[lo * lanes : (lo + 1) * lanes]
                at = (hi * count + lo) * lanes
                a, x = re[at : at + lanes], lr[at : at + lanes]
                if complex_:
                    b, y = im[at : at + lanes], li[at : at + lanes]
                    for i in range(lanes):
                        d = t[i] + u[i]
                        x[i] = d * a[i]
                        y[i] = d * b[i]
                else:
                    for i in range(lanes):
                        x[i] = (t[i] + u[i]) * a[i]

    @_inline
    def _fold_halves(src, dst, half):
        """dst[j] = src[j] + src[j + half] for j < half; returns Σ_j src[j] − src[j + half]."""
        acc = src[0] - src[0]
        for j in range(half):
            a = src[j]
            c = src[j + half]
            acc += a - c
            dst[j] = a + c
        return acc

    @_inline
    def _fold_lane_halves(src, dst, half, lanes, acc):
        """:func:`_fold_halves` for every lane of a group at once: dst[j] = src[j] +
        src[j + half]; acc[l] = Σ_j src[j] − src[j + half] over lane l's values."""
        for i in range(lanes):
            acc[i] = 0
        for j0 in range(0, half, lanes):
            a = src[j0 : j0 + lanes]
            c = src[j0 + half : j0 + half + lanes]
            d = dst[j0 : j0 + lanes]
            for i in range(lanes):
                x, y = a[i], c[i]
                acc[i] += x - y
                d[i] = x + y

    @_inline
    def _z_measure_lanes(re, im, complex_, p, q, n, lanes, acc, z):
        """⟨Z_k⟩ = z[l, k] of every lane l and wire k of a group's state (lane layout,
        imaginary parts ``im`` when ``complex_``): :func:`_z_fold` of |ψ|², whose first
        fold (wire 0) reads the state itself. p and q are scratch; acc holds ``lanes``
        values."""
        half = re.shape[0] >> 1
        for i in range(lanes):
            acc[i] = 0
        for j0 in range(0, half, lanes):
            a, c = re[j0 : j0 + lanes], re[j0 + half : j0 + half + lanes]
            dst = p[j0 : j0 + lanes]
            if complex_:
                b, e = im[j0 : j0 + lanes], im[j0 + half : j0 + half + lanes]
                for i in range(lanes):
                    x = a[i] * a[i] + b[i] * b[i]
                    y = c[i] * c[i] + e[i] * e[i]
                    acc[i] += x - y
                    dst[i] = x + y
            else:
                for i in range(lanes):
                    x = a[i] * a[i]
                    y = c[i] * c[i]
                    acc[i] += x - y
                    dst[i] = x + y
        for i in range(lanes):
            z[i, 0] = acc[i]
        _z_folds(p, q, half, n, lanes, acc, z)

    @_inline
    def _z_folds(p, q, size, n, lanes, acc, z):
        """z[l, k] for the wires k = 1 … n − 1, from p holding the first fold (``size``
        values: Σ of |ψ|² over wire 0's two values, lane layout); p and q are consumed."""
        for k in range(1, n):
            half = size >> 1
            if lanes == 16 and half >= 256:  # whole blocks of 16 amplitudes
                for i in range(16):
                    acc[i] = 0
                for j0 in range(0, half // 16, 16):
                    if k % 2 == 1:
                        _fold_block(p, q, acc, j0, half)
                    else:
                        _fold_block(q, p, acc, j0, half)
            elif k % 2 == 1:
                _fold_lane_halves(p, q, half, lanes, acc)
            else:
                _fold_lane_halves(q, p, half, lanes, acc)
            for i in range(lanes):
                z[i, k] = acc[i]
            size = half

    @_inline
    def _measured_top_level(re, im, p, q, n, acc, z):
        """For a full group (16 lanes; n ≥ 5, so that each half holds whole blocks of 16
        amplitudes) whose complex state has had every butterfly level but the top one
        (bit n − 1, wire 0): that level and the ⟨Z_k⟩ of every wire into z, the level's
        |ψ|² folded in the same sweep (:func:`_measured_top_block`) instead of read back
        by :func:`_z_measure_lanes`."""
        half = (1 << (n - 1)) * 16
        for i in range(16):
            acc[i] = 0
        for j0 in range(0, 1 << (n - 1), 16):
            _measured_top_block(re, im, p, acc, j0, half)
        for i in range(16):
            z[i, 0] = acc[i]
        _z_folds(p, q, half, n, 16, acc, z)

    @_inline
    def _z_fold(p, q, n, z):
        """z[k] = Σ_j p_j (1 − 2·bit_k(j)) for every wire k, by folding halves from wire 0
        (the top bit) down: 2·2^n additions instead of n·2^n. p and q are consumed. (The
        two arrays alternate by branch, not by swapping names: with the swap LLVM left
        the loop scalar, 3× slower.)"""
        size = p.shape[0]
        for k in range(n):
            half = size >> 1
            if k % 2 == 0:
                z[k] = _fold_halves(p, q, half)
            else:
                z[k] = _fold_halves(q, p, half)
            size = half

    @_inline
    def _group_forward(n, lanes, prog, first_complex, mats, perms, signs, phase_r, phase_i,
                       s, si, t, ti):
        """Runs ``prog`` on the group's real state ``s`` (lane layout); returns the arrays
        holding the final state's real and imaginary parts (the latter meaningful only
        when the program has a complex instruction). si, t, ti are scratch."""
        cur, other = s, t
        cur_i, other_i = si, ti
        for g in range(prog.shape[0]):
            kind = prog[g, 0]
            if kind == 4:
                table = prog[g, 2]
                _lane_phase(cur, cur_i, phase_r[table], phase_i[table], lanes,
                            g == first_complex)
                continue
            if kind == 2:
                index, sign = perms[prog[g, 2]], signs[prog[g, 2]]
                _lane_permute(cur, other, index, sign, lanes)
                cur, other = other, cur
                if g > first_complex:
                    _lane_permute(cur_i, other_i, index, sign, lanes)
                    cur_i, other_i = other_i, cur_i
                continue
            if kind == 3:
                _lane_sign(cur, signs[prog[g, 2]], lanes)
                if g > first_complex:
                    _lane_sign(cur_i, signs[prog[g, 2]], lanes)
                continue
            # Partner amplitudes are h apart, so partner rows h·lanes values apart.
            hl = (1 << (n - 1 - prog[g, 1])) * lanes
            m = mats[prog[g, 2]]
            if g == first_complex:
                for i in range(cur_i.shape[0]):
                    cur_i[i] = 0
            if kind == 0:
                _apply_real(cur, hl, m[0, 0, 0], m[0, 1, 0], m[1, 0, 0], m[1, 1, 0])
                if g > first_complex:
                    _apply_real(cur_i, hl, m[0, 0, 0], m[0, 1, 0], m[1, 0, 0], m[1, 1, 0])
            else:
                _apply_complex(cur, cur_i, hl, m)
        return cur, cur_i

    @_inline
    def _unrotate_real(x0, x1, l0, l1, m00, m01, m10, m11):
        """(x0, x1) ← Mᵀ (x0, x1) and (l0, l1) ← Mᵀ (l0, l1) in place; returns
        Σ l_a·x_b over the halves (λ after the gate, the state before it)."""
        s00 = s01 = s10 = s11 = x0[0] - x0[0]
        for i in range(x0.shape[0]):
            a, c = x0[i], x1[i]
            p0 = m00 * a + m10 * c
            p1 = m01 * a + m11 * c
            x0[i] = p0
            x1[i] = p1
            la, lc = l0[i], l1[i]
            s00 += la * p0
            s01 += la * p1
            s10 += lc * p0
            s11 += lc * p1
            l0[i] = m00 * la + m10 * lc
            l1[i] = m01 * la + m11 * lc
        return s00, s01, s10, s11

    @_inline
    def _undo_real(cur, lam, h, m00, m01, m10, m11):
        """cur ← Mᵀ cur, lam ← Mᵀ lam in place (M real orthogonal); returns
        Σ lam_a·prev_b (prev: the state before the gate)."""
        dim = cur.shape[0]
        s00 = s01 = s10 = s11 = cur[0] - cur[0]
        if h >= 8:
            for base in range(0, dim, 2 * h):
                for c in range(base, base + h, _CHUNK):
                    e = min(c + _CHUNK, base + h)
                    lo, hi = slice(c, e), slice(c + h, e + h)
                    r = _unrotate_real(cur[lo], cur[hi], lam[lo], lam[hi], m00, m01, m10, m11)
                    s00 += r[0]
                    s01 += r[1]
                    s10 += r[2]
                    s11 += r[3]
        else:
            step = 2 * h
            for base in range(0, dim, step):
                if h == 4:
                    r = _undo_pairs_real(cur, lam, base, 4, m00, m01, m10, m11)
                elif h == 2:
                    r = _undo_pairs_real(cur, lam, base, 2, m00, m01, m10, m11)
                else:
                    r = _undo_pairs_real(cur, lam, base, 1, m00, m01, m10, m11)
                s00 += r[0]
                s01 += r[1]
                s10 += r[2]
                s11 += r[3]
        return s00, s01, s10, s11

    @_inline
    def _undo_pairs_real(cur, lam, lo, h, m00, m01, m10, m11):
        s00 = s01 = s10 = s11 = cur[0] - cur[0]
        for i in range(lo, lo + h):
            a, c = cur[i], cur[i + h]
            p0 = m00 * a + m10 * c
            p1 = m01 * a + m11 * c
            cur[i] = p0
            cur[i + h] = p1
            la, lc = lam[i], lam[i + h]
            s00 += la * p0
            s01 += la * p1
            s10 += lc * p0
            s11 += lc * p1
            lam[i] = m00 * la + m10 * lc
            lam[i + h] = m01 * la + m11 * lc
        return s00, s01, s10, s11

    @_inline
    def _adjoint_rows(m):
        """The rows of M† for a complex matrix m[a, b, (re, im)], as scalars:
        (conj m00, conj m10) and (conj m01, conj m11), each (re, im)."""
        return (m[0, 0, 0], -m[0, 0, 1], m[1, 0, 0], -m[1, 0, 1],
                m[0, 1, 0], -m[0, 1, 1], m[1, 1, 0], -m[1, 1, 1])

    @_inline
    def _add_complex_grad(gm, r):
        """gm[a, b, (re, im)] += r, r the eight sums of :func:`_couter` order."""
        gm[0, 0, 0] += r[0]
        gm[0, 0, 1] += r[1]
        gm[0, 1, 0] += r[2]
        gm[0, 1, 1] += r[3]
        gm[1, 0, 0] += r[4]
        gm[1, 0, 1] += r[5]
        gm[1, 1, 0] += r[6]
        gm[1, 1, 1] += r[7]

    @_inline
    def _couter(l0r, l0i, l1r, l1i, p0r, p0i, p1r, p1i):
        """Σ λ_a·conj(ψ_b) for a, b ∈ {0, 1} in one read of the eight arrays, as (re, im)
        of (00, 01, 10, 11)."""
        z = l0r[0] - l0r[0]
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = z
        for i in range(l0r.shape[0]):
            x0r, x0i, x1r, x1i = l0r[i], l0i[i], l1r[i], l1i[i]
            y0r, y0i, y1r, y1i = p0r[i], p0i[i], p1r[i], p1i[i]
            a0 += x0r * y0r + x0i * y0i
            a1 += x0i * y0r - x0r * y0i
            a2 += x0r * y1r + x0i * y1i
            a3 += x0i * y1r - x0r * y1i
            a4 += x1r * y0r + x1i * y0i
            a5 += x1i * y0r - x1r * y0i
            a6 += x1r * y1r + x1i * y1i
            a7 += x1i * y1r - x1r * y1i
        return a0, a1, a2, a3, a4, a5, a6, a7

    @_inline
    def _undo_complex(cr, ci, lr, li, pr, pi, qr, qi, h, m, gm):
        """prev = M† cur and lprev = M† lam into (pr, pi) and (qr, qi); adds
        Σ lam_a·conj(prev_b) to gm[a, b, (re, im)]."""
        dim = cr.shape[0]
        a0r, a0i, b0r, b0i, a1r, a1i, b1r, b1i = _adjoint_rows(m)
        for base in range(0, dim, 2 * h):
            for c in range(base, base + h, _CHUNK):
                e = min(c + _CHUNK, base + h)
                lo, hi = slice(c, e), slice(c + h, e + h)
                _mix_c(pr[lo], pi[lo], cr[lo], ci[lo], cr[hi], ci[hi], a0r, a0i, b0r, b0i)
                _mix_c(pr[hi], pi[hi], cr[lo], ci[lo], cr[hi], ci[hi], a1r, a1i, b1r, b1i)
                r = _couter(lr[lo], li[lo], lr[hi], li[hi], pr[lo], pi[lo], pr[hi], pi[hi])
                _add_complex_grad(gm, r)
                _mix_c(qr[lo], qi[lo], lr[lo], li[lo], lr[hi], li[hi], a0r, a0i, b0r, b0i)
                _mix_c(qr[hi], qi[hi], lr[lo], li[lo], lr[hi], li[hi], a1r, a1i, b1r, b1i)

    @_inline
    def _unrotate_complex(x0r, x0i, x1r, x1i, l0r, l0i, l1r, l1i,
                          a0r, a0i, b0r, b0i, a1r, a1i, b1r, b1i):
        """x ← M† x and l ← M† l in place on split halves (the rows of M† given as
        (a0, b0), (a1, b1)); returns Σ l_a·conj(x_b) after the state's step (λ after the
        gate, the state before it) as (re, im) of (00, 01, 10, 11)."""
        z = x0r[0] - x0r[0]
        g0 = g1 = g2 = g3 = g4 = g5 = g6 = g7 = z
        for i in range(x0r.shape[0]):
            ar, ai, cr, ci = x0r[i], x0i[i], x1r[i], x1i[i]
            p0r = (a0r * ar - a0i * ai) + (b0r * cr - b0i * ci)
            p0i = (a0r * ai + a0i * ar) + (b0r * ci + b0i * cr)
            p1r = (a1r * ar - a1i * ai) + (b1r * cr - b1i * ci)
            p1i = (a1r * ai + a1i * ar) + (b1r * ci + b1i * cr)
            x0r[i], x0i[i], x1r[i], x1i[i] = p0r, p0i, p1r, p1i
            y0r, y0i, y1r, y1i = l0r[i], l0i[i], l1r[i], l1i[i]
            g0 += y0r * p0r + y0i * p0i
            g1 += y0i * p0r - y0r * p0i
            g2 += y0r * p1r + y0i * p1i
            g3 += y0i * p1r - y0r * p1i
            g4 += y1r * p0r + y1i * p0i
            g5 += y1i * p0r - y1r * p0i
            g6 += y1r * p1r + y1i * p1i
            g7 += y1i * p1r - y1r * p1i
            l0r[i] = (a0r * y0r - a0i * y0i) + (b0r * y1r - b0i * y1i)
            l0i[i] = (a0r * y0i + a0i * y0r) + (b0r * y1i + b0i * y1r)
            l1r[i] = (a1r * y0r - a1i * y0i) + (b1r * y1r - b1i * y1i)
            l1i[i] = (a1r * y0i + a1i * y0r) + (b1r * y1i + b1i * y1r)
        return g0, g1, g2, g3, g4, g5, g6, g7

    @_inline
    def _undo_complex_in_place(cr, ci, lr, li, h, m, gm):
        """:func:`_undo_complex` in place: cur ← M† cur and lam ← M† lam (any h; for
        h < 8 each stretch is one block's h values)."""
        dim = cr.shape[0]
        a0r, a0i, b0r, b0i, a1r, a1i, b1r, b1i = _adjoint_rows(m)
        for base in range(0, dim, 2 * h):
            for c in range(base, base + h, _CHUNK):
                e = min(c + _CHUNK, base + h)
                lo, hi = slice(c, e), slice(c + h, e + h)
                r = _unrotate_complex(cr[lo], ci[lo], cr[hi], ci[hi], lr[lo], li[lo],
                                      lr[hi], li[hi], a0r, a0i, b0r, b0i, a1r, a1i, b1r, b1i)
                _add_complex_grad(gm, r)

    @_inline
    def _group_backward(n, lanes, prog, first_complex, mats, perms, signs, phase_r, phase_i,
                        phase_grad, gm, gp, bufs, u, u2, fold):
        """Adjoint sweep for one group (lane layout) from the final state in bufs[0] (re)
        and bufs[2] (im) and λ = ∂L/∂ψ* in bufs[4] (re) and bufs[6] (im): un-applies every
        instruction to the state and to λ, adding ∂L/∂mats to gm and ∂L/∂β of the phase
        tables that ``phase_grad`` marks to gp. u, u2 (2^n) and fold (n) are scratch.
        Returns the arrays holding (ψ₀, Re λ₀)."""
        s, s2, si, si2, lam, lam2, li, li2 = (
            bufs[0], bufs[1], bufs[2], bufs[3], bufs[4], bufs[5], bufs[6], bufs[7]
        )
        count = prog.shape[0]
        is_complex = first_complex < count
        for g in range(count - 1, -1, -1):
            kind = prog[g, 0]
            if kind == 4:
                table = prog[g, 2]
                with_grad = phase_grad[table] != 0
                _lane_unphase(s, si, lam, li, phase_r[table], phase_i[table], lanes, u,
                              with_grad)
                if with_grad:
                    # ∂L/∂β_w = ½ Σ_j (1 − 2·bit_w(j))·u_j: one fold for every wire
                    _z_fold(u, u2, n, fold)
                    for w in range(n):
                        gp[table, w] += 0.5 * fold[w]
                if g == first_complex:
                    is_complex = False
                continue
            if kind == 3:
                sign = signs[prog[g, 2]]
                _lane_sign(s, sign, lanes)
                _lane_sign(lam, sign, lanes)
                if is_complex:
                    _lane_sign(si, sign, lanes)
                    _lane_sign(li, sign, lanes)
                continue
            if kind == 2:
                index, sign = perms[prog[g, 2]], signs[prog[g, 2]]
                _lane_unpermute(s, s2, index, sign, lanes)
                _lane_unpermute(lam, lam2, index, sign, lanes)
                s, s2 = s2, s
                lam, lam2 = lam2, lam
                if is_complex:
                    _lane_unpermute(si, si2, index, sign, lanes)
                    _lane_unpermute(li, li2, index, sign, lanes)
                    si, si2 = si2, si
                    li, li2 = li2, li
                continue
            hl = (1 << (n - 1 - prog[g, 1])) * lanes
            m = mats[prog[g, 2]]
            grad = gm[prog[g, 2]]
            if kind == 1 or (is_complex and hl < 8):
                # (below 8 values, in groups of fewer than 8 rows, a real matrix on a
                # complex state takes the complex step too: one block at a time)
                if hl < 8 or hl >= _UNDO_COMPLEX_IN_PLACE:
                    _undo_complex_in_place(s, si, lam, li, hl, m, grad)
                else:
                    _undo_complex(s, si, lam, li, s2, si2, lam2, li2, hl, m, grad)
                    s, s2 = s2, s
                    lam, lam2 = lam2, lam
                    si, si2 = si2, si
                    li, li2 = li2, li
            else:
                r = _undo_real(s, lam, hl, m[0, 0, 0], m[0, 1, 0], m[1, 0, 0], m[1, 1, 0])
                grad[0, 0, 0] += r[0]
                grad[0, 1, 0] += r[1]
                grad[1, 0, 0] += r[2]
                grad[1, 1, 0] += r[3]
                if is_complex:
                    # A real matrix on a complex state: the imaginary parts evolve by the
                    # same matrix; their contribution to Re Σ λ·conj(prev) is added too.
                    r = _undo_real(si, li, hl, m[0, 0, 0], m[0, 1, 0], m[1, 0, 0], m[1, 1, 0])
                    grad[0, 0, 0] += r[0]
                    grad[0, 1, 0] += r[1]
                    grad[1, 0, 0] += r[2]
                    grad[1, 1, 0] += r[3]
            if g == first_complex:
                is_complex = False  # before it the state is real: Re λ is all we need
        return s, lam

    @_inline
    def _group_size(remaining, cap):
        """``cap``, or the largest power of two ≤ ``remaining`` (partner rows h·lanes apart
        must be a power of two for :func:`_apply_real`'s short-pair branches)."""
        lanes = cap
        while lanes > remaining:
            lanes >>= 1
        return lanes

    @_jit
    def _general_rows(feats, n, prog, first_complex, mats, perms, signs, phase_r, phase_i,
                      out, norms, work_r, work_i, cap, b0, b1, b2):
        """The forward of a chunk of rows: work_r (and work_i, for a complex program) get
        the final states of each group of rows in the group's lane layout, for the
        backward, which groups the rows the same way (the same ``cap`` and chunks)."""
        dim = 1 << n
        complex_ = first_complex < prog.shape[0]
        batch = feats.shape[0]
        acc = np.empty(cap, b0.dtype)
        scale = np.empty(cap, b0.dtype)
        # Each permutation moves the state to the other buffer (the imaginary parts only
        # after the first complex instruction): the state starts in scratch when their
        # count is odd, so that it ends in the saved arrays without a copy.
        moves_re = moves_im = 0
        for g in range(prog.shape[0]):
            if prog[g, 0] == 2:
                moves_re += 1
                if g > first_complex:
                    moves_im += 1
        start = 0
        while start < batch:
            lanes = _group_size(batch - start, cap)
            size = dim * lanes
            stop = start + lanes
            keep = work_r[start:stop].reshape((size,))
            s, t = keep, b1[:size]
            if moves_re % 2 == 1:
                s, t = t, s
            keep_i = si = b0[:size]  # a real program never touches the imaginary parts
            ti = b2[:size]
            if complex_:
                keep_i = si = work_i[start:stop].reshape((size,))
                if moves_im % 2 == 1:
                    si, ti = ti, si
            if not _encode_group(feats[start:stop], norms[start:stop], s, lanes, scale, None):
                return
            re, im = _group_forward(n, lanes, prog, first_complex, mats, perms, signs,
                                    phase_r, phase_i, s, si, t, ti)
            if re.ctypes.data != keep.ctypes.data:  # not expected: see moves_re
                keep[:] = re
            if complex_ and im.ctypes.data != keep_i.ctypes.data:
                keep_i[:] = im
            # b1 and b2 are free: the state occupies neither
            _z_measure_lanes(keep, keep_i, complex_, b1[:size], b2[:size], n, lanes, acc,
                             out[start:stop])
            start = stop

    @_jit
    def _general_grad_rows(feats, work_r, work_i, n, prog, first_complex, mats, perms, signs,
                           phase_r, phase_i, phase_grad, gout, norms, grad, gm, gp, row, row2,
                           cap, c0, c1, c2, c3, c4, c5, c6, c7):
        """The backward of a chunk: work_r, work_i hold the final states in the lane
        layout of :func:`_general_rows`'s groups (the same ``cap``); feats the rows the
        forward encoded."""
        dim = 1 << n
        complex_ = first_complex < prog.shape[0]
        batch = work_r.shape[0]
        fold = np.empty(n, row.dtype)
        shift = np.empty(cap, row.dtype)
        scale = np.empty(cap, row.dtype)
        top = np.empty((1 << (n - n // 2)) * cap, row.dtype)
        low = np.empty((1 << (n // 2)) * cap, row.dtype)
        start = 0
        while start < batch:
            lanes = _group_size(batch - start, cap)
            size = dim * lanes
            stop = start + lanes
            s, lam, si, li = c0[:size], c4[:size], c2[:size], c6[:size]
            # λ = ∂L/∂ψ* of L = Σ_k g_k⟨Z_k⟩ on the final state ψ (copied to s, si: the
            # sweep changes them)
            keep = work_r[start:stop].reshape((size,))
            keep_i = work_i[start:stop].reshape((size,)) if complex_ else keep
            _lambda_lanes(gout[start:stop], n, keep, keep_i, lam, li, lanes, top, low, scale,
                          complex_)
            s[:] = keep
            if complex_:
                si[:] = keep_i
            psi, lam0 = _group_backward(
                n, lanes, prog, first_complex, mats, perms, signs, phase_r, phase_i,
                phase_grad, gm, gp,
                (s, c1[:size], si, c3[:size], lam, c5[:size], li, c7[:size]),
                row, row2, fold,
            )
            _project_out_lanes(grad[start:stop], feats[start:stop], psi, lam0,
                               norms[start:stop], lanes, shift, scale)
            start = stop


_POOL: ThreadPoolExecutor | None = None
_POOL_KEY = (0, 0)  # (threads, pid) of _POOL
_POOL_LOCK = threading.Lock()


class _Rows:
    """An argument of :func:`_run_split` that is cut along the batch."""

    def __init__(self, array: np.ndarray):
        self.array = array


class _Scratch:
    """An argument of :func:`_run_split`: a scratch buffer of its own for each chunk
    (from :data:`_BUFFERS`, given back when the chunk is done)."""

    def __init__(self, size: int, dtype):
        self.size, self.dtype = size, dtype


#: Buffers of at least this many bytes are mapped on their own, asking the OS for
#: transparent huge pages (Linux's ``madvise`` mode, the default on many systems, gives
#: them only to memory that asks). The kernels stream tens of MiB of states and scratch per
#: call: with 4 KiB pages their TLB misses cost 7–17 % of the Hadamard-frame kernel's time
#: (session 27, batch 32, n = 15, two threads, both variants in one process alternating:
#: strongly-entangling fwd+bwd 21.0 → 18.2 ms at D = 5, 6.0 → 5.6 ms at D = 1; Ansatz 2
#: 14.1 → 12.3 ms at D = 3).
_HUGE_PAGE = 2 << 20


def _empty(size: int, dtype) -> np.ndarray:
    """An uninitialised 1-D array of ``size`` values; from ``_HUGE_PAGE`` bytes on, in an
    anonymous private mapping of its own, 2 MiB-aligned and advised ``MADV_HUGEPAGE``
    (``np.empty`` where the platform has no such advice or refuses it). The array keeps
    its mapping alive; the mapping goes when the last array on it does."""
    dtype = np.dtype(dtype)
    nbytes = size * dtype.itemsize
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    flags = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)
    if nbytes < _HUGE_PAGE or advice is None or not flags:
        return np.empty(size, dtype)
    try:
        region = mmap.mmap(-1, nbytes + _HUGE_PAGE, flags=flags)
        region.madvise(advice)
    except (OSError, ValueError):
        return np.empty(size, dtype)
    raw = np.frombuffer(region, dtype=np.uint8)
    start = -raw.ctypes.data % _HUGE_PAGE
    return raw[start : start + nbytes].view(dtype)


class _BufferPool:
    """Large arrays kept between kernel calls instead of allocated afresh each time.

    A multi-MiB ``np.empty`` is a fresh mmap, so every call paid a page fault and the
    kernel's zeroing for each 4 KiB page it touched: 16–40 MiB of scratch and saved
    states per call at batch 32, n = 15 (measured, session 22: the general kernel's
    forward of 15 complex gates 7.5 → 4.8 ms with the scratch reused, its backward
    17 → 13 ms). Buffers are handed out by (size, dtype), uninitialised, and come back
    when the chunk (scratch) or the autograd node (:class:`Lease`) is done with them; at
    most :attr:`max_idle_bytes` wait idle, the least recently given back are freed first
    (a pool that refused new buffers once full kept the sizes of earlier calls and made
    every call of a new shape page-fault afresh; strongly-entangling after Ansatz 2 and
    simplified-two-design in one process, fwd+bwd at D = 1 / 3 / 5, one run each: 8.4 /
    16.1 / 23.0 → 7.3 / 14.7 / 21.8 ms; its forward keeps 84 MiB at D = 5).
    """

    def __init__(self, max_idle_bytes: int):
        self.max_idle_bytes = max_idle_bytes
        self._idle: list[np.ndarray] = []  # least recently given back first
        self._idle_bytes = 0
        self._lock = threading.Lock()

    def take(self, size: int, dtype) -> np.ndarray:
        """A 1-D array of ``size`` values (contents undefined)."""
        dtype = np.dtype(dtype)
        with self._lock:
            for i in range(len(self._idle) - 1, -1, -1):
                buffer = self._idle[i]
                if buffer.size == size and buffer.dtype == dtype:
                    del self._idle[i]
                    self._idle_bytes -= buffer.nbytes
                    return buffer
        return _empty(size, dtype)

    def give(self, buffer: np.ndarray) -> None:
        """Takes back a buffer from :meth:`take` (the caller no longer uses it)."""
        if buffer.nbytes > self.max_idle_bytes:
            return
        with self._lock:
            self._idle.append(buffer)
            self._idle_bytes += buffer.nbytes
            while self._idle_bytes > self.max_idle_bytes:
                self._idle_bytes -= self._idle.pop(0).nbytes

    def clear(self) -> int:
        """Drops the idle buffers; returns their bytes."""
        with self._lock:
            freed, self._idle, self._idle_bytes = self._idle_bytes, [], 0
        return freed

    def forget(self) -> None:
        """In a forked child: a new lock (the parent's may have been held by a thread
        that does not exist here) and no idle buffers (they are the parent's pages)."""
        self._lock = threading.Lock()
        self.clear()


#: The kernels' buffers (256 MiB idle at most: a batch of 256 at n = 15 needs ~100 MiB).
_BUFFERS = _BufferPool(256 << 20)
if hasattr(os, "register_at_fork"):  # DataLoader workers are forked children
    os.register_at_fork(after_in_child=_BUFFERS.forget)


def free_buffers() -> int:
    """Frees the buffers the kernels keep for their next call; returns the bytes freed."""
    return _BUFFERS.clear()


class Lease:
    """Arrays from the kernels' buffer pool that stay valid as long as this object lives
    (an autograd node keeps it between the forward and the backward) and go back to the
    pool when it is collected. Keep the lease, not only the arrays."""

    def __init__(self):
        self._buffers: list[np.ndarray] = []

    def array(self, shape: tuple[int, ...], dtype) -> np.ndarray:
        """An uninitialised array of ``shape`` owned by this lease."""
        buffer = _BUFFERS.take(int(np.prod(shape)), dtype)
        self._buffers.append(buffer)
        return buffer.reshape(shape)

    def __del__(self):
        buffers, self._buffers = self._buffers, []
        pool = globals().get("_BUFFERS")  # None-safe at interpreter shutdown
        if pool is not None:
            for buffer in buffers:
                pool.give(buffer)


class _PerChunk:
    """An argument of :func:`_run_split`: chunk i gets ``array[i]`` (for accumulators)."""

    def __init__(self, array: np.ndarray):
        self.array = array


class KernelThreadWarning(UserWarning):
    """The CPU kernels' threads compete with busy-waiting torch OpenMP workers."""


_POLICY_CHECKED = False


def spinning_torch_workers() -> bool:
    """Whether torch's OpenMP workers busy-wait after each op: torch was imported before
    qhead while ``OMP_WAIT_POLICY`` was unset, so ``import qhead`` could not set it
    (libgomp reads it once, when torch loads it) and the default spin applies."""
    import qhead

    return qhead.TORCH_IMPORTED_FIRST and "OMP_WAIT_POLICY" not in os.environ


def _check_thread_policy() -> None:
    global _POLICY_CHECKED
    _POLICY_CHECKED = True
    if spinning_torch_workers():
        warnings.warn(
            "torch was imported before qhead with OMP_WAIT_POLICY unset: torch's OpenMP "
            "threads now busy-wait for milliseconds after every op and take cores from "
            "qhead's CPU kernels (about 2x slower on a 2-core machine). Fix: set "
            "OMP_WAIT_POLICY=PASSIVE in the environment before Python starts, or import "
            "qhead before torch.",
            KernelThreadWarning,
            stacklevel=4,
        )


def _threads(batch: int) -> int:
    return max(1, min(torch.get_num_threads(), batch))


#: Values between two scratch arrays of one chunk (at least LLVM's vector width times its
#: unroll factor, 64 float32 values with AVX-512, so that the runtime overlap checks of
#: the vectorised loops pass however small the arrays are).
_SCRATCH_GAP = 64


def _scratch_views(sizes: list[tuple[int, np.dtype]]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """One pool buffer per dtype, cut into arrays of the given ``(size, dtype)``s at fixed
    offsets; returns (the buffers, to give back; the arrays, in order).

    Why one buffer: a loop that reduces while it stores into another array (the adjoint
    steps, the Z fold) is vectorised behind a runtime check that the arrays do not overlap
    and runs as a scalar loop otherwise, which sums in another order. With separate pool
    buffers that check depended on where the pool's buffers happened to lie, and a
    gradient changed in its last bit from one call to the next (a backward run twice was
    not reproducible; ``gradcheck`` failed). At fixed offsets the outcome depends on the
    sizes alone.
    """
    places: list[tuple[np.dtype, int, int]] = []  # (dtype, start, stop) of each array
    totals: dict[np.dtype, int] = {}
    for size, dtype in sizes:
        start = totals.get(dtype, 0)
        places.append((dtype, start, start + size))
        totals[dtype] = start + size + _SCRATCH_GAP
    blocks = {dtype: _BUFFERS.take(total, dtype) for dtype, total in totals.items()}
    views = [blocks[dtype][start:stop] for dtype, start, stop in places]
    return list(blocks.values()), views


def _run_split(kernel, batch: int, *args, threads: int | None = None) -> None:
    """Runs ``kernel`` on contiguous row chunks of the batch, one per torch thread (or
    ``threads`` chunks: a backward cuts the batch as its forward did).

    ``_Rows`` arguments are sliced to the chunk, ``_Scratch`` ones become arrays cut from
    one pool buffer per chunk (:func:`_scratch_views`), ``_PerChunk`` ones give the chunk
    its own entry, anything else is passed as is. The kernels release the GIL, so the
    chunks run in parallel in a small thread pool.
    """
    global _POOL, _POOL_KEY
    threads = _threads(batch) if threads is None else threads
    bounds = [batch * i // threads for i in range(threads + 1)]

    scratch_sizes = [(a.size, np.dtype(a.dtype)) for a in args if isinstance(a, _Scratch)]

    def job(i: int) -> None:
        lo, hi = bounds[i], bounds[i + 1]
        blocks, views = _scratch_views(scratch_sizes)
        buffers = iter(views)
        try:
            kernel(*(
                a.array[lo:hi] if isinstance(a, _Rows)
                else next(buffers) if isinstance(a, _Scratch)
                else a.array[i] if isinstance(a, _PerChunk)
                else a
                for a in args
            ))
        finally:
            for block in blocks:
                _BUFFERS.give(block)

    if threads == 1:
        job(0)
        return
    if not _POLICY_CHECKED:
        _check_thread_policy()
    with _POOL_LOCK:
        # A forked child (a DataLoader worker, say) inherits the pool object but not its
        # threads: it makes a pool of its own.
        key = (threads, os.getpid())
        if _POOL is None or key != _POOL_KEY:
            if _POOL is not None and _POOL_KEY[1] == key[1]:
                _POOL.shutdown(wait=False)
            _POOL = ThreadPoolExecutor(threads - 1, thread_name_prefix="qhead-kernel")
            _POOL_KEY = key
        pool = _POOL
    # The calling thread takes the first chunk itself instead of waiting idle.
    futures = [pool.submit(job, i) for i in range(1, threads)]
    job(0)
    for future in futures:
        future.result()


def _as_array(t: torch.Tensor, like: np.ndarray | None = None) -> np.ndarray:
    if like is not None:
        t = t.to(torch.from_numpy(like[:0]).dtype)
    return t.detach().contiguous().numpy()


def _qubits(dim: int) -> int:
    return dim.bit_length() - 1


def zx_forward(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """⟨Z_k⟩ and ⟨X_k⟩ of each real state row, for all n wires.

    Args:
        flat: ``[B, 2^n]`` float32/float64 CPU tensor of normalised states, n ≥ 3.

    Returns:
        ``(z, x)``, each ``[B, n]`` in the dtype of ``flat``.
    """
    batch, dim = flat.shape
    n = _qubits(dim)
    state = _as_array(flat)
    z = np.empty((batch, n), state.dtype)
    x = np.empty((batch, n), state.dtype)
    _run_split(
        _zx_rows, batch, _Rows(state), n, _Rows(z), _Rows(x), _Scratch(dim >> 3, state.dtype)
    )
    return torch.from_numpy(z), torch.from_numpy(x)


def zx_backward(flat: torch.Tensor, gz: torch.Tensor, gx: torch.Tensor) -> torch.Tensor:
    """``[B, 2^n]`` gradient of ``Σ gz·z + gx·x`` (:func:`zx_forward`) w.r.t. the states.

    ``gz`` and ``gx`` are ``[B, n]`` (zeros for wires that are not used).
    """
    batch, dim = flat.shape
    n = _qubits(dim)
    state = _as_array(flat)
    grad = np.empty_like(state)
    _run_split(
        _zx_grad_rows, batch, _Rows(state), n, _Rows(_as_array(2 * gz, state)),
        _Rows(_as_array(2 * gx, state)), _Rows(grad), _Scratch(dim >> 3, state.dtype),
    )
    return torch.from_numpy(grad)


def encoded_zx_forward(
    features: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray] | None:
    """:func:`zx_forward` of ``amplitude_encode(features, n)`` without building the states.

    Args:
        features: ``[B, N]`` float32/float64 CPU tensor, N ≤ 2^n, n ≥ 3.
        n: number of qubits.

    Returns:
        ``(z, x, norms)`` (``[B, n]``, ``[B, n]``, ``[B]`` float64 row norms, 0 for
        all-zero rows, which encode as |0…0⟩), or ``None`` when some row needs the
        torch encoder (non-finite values, or float64 norms out of range).
    """
    batch = features.shape[0]
    feats = _as_array(features)
    z = np.empty((batch, n), feats.dtype)
    x = np.empty((batch, n), feats.dtype)
    norms = np.zeros(batch)
    _run_split(
        _encoded_zx_rows, batch, _Rows(feats), n, _Rows(z), _Rows(x), _Rows(norms),
        _Scratch(2**n, feats.dtype), _Scratch(2 ** (n - 3), feats.dtype),
    )
    if not (norms >= 0).all():
        return None
    return torch.from_numpy(z), torch.from_numpy(x), norms


def encoded_zx_backward(
    features: torch.Tensor, n: int, norms: np.ndarray, gz: torch.Tensor, gx: torch.Tensor
) -> torch.Tensor:
    """``[B, N]`` gradient of ``Σ gz·z + gx·x`` (:func:`encoded_zx_forward`, its
    ``norms``; ``gz``, ``gx`` are ``[B, n]``) w.r.t. the features (zero for all-zero
    rows)."""
    feats = _as_array(features)
    grad = np.empty_like(feats)
    _run_split(
        _encoded_zx_grad_rows, feats.shape[0], _Rows(feats), n,
        _Rows(_as_array(2 * gz, feats)), _Rows(_as_array(2 * gx, feats)), _Rows(norms),
        _Rows(grad),
        _Scratch(2**n, feats.dtype), _Scratch(2**n, feats.dtype),
        _Scratch(2 ** (n - 3), feats.dtype),
    )
    return torch.from_numpy(grad)


def encoded_layer_forward(
    features: torch.Tensor, n: int, mats: torch.Tensor, signs_t: np.ndarray
) -> tuple[torch.Tensor, np.ndarray, np.ndarray, Lease] | None:
    """``signsᵀ |(⊗_w mats[w]) ψ|²`` per row, ψ = ``amplitude_encode(features, n)``.

    Args:
        features: ``[B, N]`` float32/float64 CPU tensor, N ≤ 2^n, n ≥ 3.
        n: number of qubits.
        mats: ``[n, 2, 2]`` real orthogonal matrices, one per wire (identity where a
            wire has no gate).
        signs_t: ``[m, 2^n]`` ±1 table of the measured Z-parities, C-contiguous, in
            the dtype of ``features``.

    Returns:
        ``(out [B, m], evolved states [B, 2^n], norms [B], lease)``, or ``None`` when
        some row needs the torch encoder (see :func:`encoded_zx_forward`). The states'
        memory belongs to ``lease`` (:class:`Lease`): keep it as long as the states.
    """
    batch = features.shape[0]
    feats = _as_array(features)
    out = np.empty((batch, signs_t.shape[0]), feats.dtype)
    lease = Lease()
    work = lease.array((batch, 2**n), feats.dtype)
    norms = np.zeros(batch)
    _run_split(
        _encoded_layer_rows, batch, _Rows(feats), n, _as_array(mats, feats), signs_t,
        _Rows(out), _Rows(norms), _Rows(work), _Scratch(2**n, feats.dtype),
    )
    if not (norms >= 0).all():
        return None
    return torch.from_numpy(out), work, norms, lease


def encoded_layer_backward(
    work: np.ndarray, n_features: int, norms: np.ndarray, mats: torch.Tensor,
    signs_t: np.ndarray, gout: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of :func:`encoded_layer_forward` w.r.t. the features ``[B, N]`` (zero
    for all-zero rows) and ``mats``; ``work`` is its second output."""
    batch, dim = work.shape
    n = _qubits(dim)
    mats_np = _as_array(mats, work)
    grad = np.empty((batch, n_features), work.dtype)
    gm = np.zeros((_threads(batch), *mats_np.shape), work.dtype)
    _run_split(
        _encoded_layer_grad_rows, batch, _Rows(work), n, mats_np, signs_t,
        _Rows(_as_array(2 * gout, work)), _Rows(norms), _Rows(grad), _PerChunk(gm),
        _Scratch(dim, work.dtype), _Scratch(dim, work.dtype), _Scratch(dim, work.dtype),
        _Scratch(dim, work.dtype),
    )
    return torch.from_numpy(grad), torch.from_numpy(gm.sum(axis=0))


def general_forward(
    features: torch.Tensor, n: int, prog: np.ndarray, first_complex: int, mats: torch.Tensor,
    perms: np.ndarray, signs: np.ndarray, phases: torch.Tensor | None = None,
) -> tuple[torch.Tensor, tuple] | None:
    """⟨Z_k⟩ of every wire k after any program of one-qubit matrices, signed
    permutations and diagonal phases.

    The rows are evolved in groups of up to :data:`LANES` examples, interleaved
    (``state[j·L + l]`` is amplitude j of example l): a gate on wire w then combines
    contiguous rows of L values h·L apart (h = 2^(n−1−w)), so every loop is long enough
    to vectorise, the lowest wires included, and a permutation moves whole rows instead
    of gathering single values. A group's four arrays (2 MiB each at n = 15, L = 16)
    stay in the cache while the whole program runs.

    Args:
        features: ``[B, N]`` float32/float64 CPU tensor, N ≤ 2^n (any n ≥ 1); ψ is
            ``amplitude_encode(features, n)``.
        n: number of qubits.
        prog: ``[G, 3]`` int64 instructions ``(kind, wire, table index)`` applied in
            order: :data:`OP_REAL` / :data:`OP_COMPLEX`, the matrix ``mats[index]`` on
            ``wire``; :data:`OP_PERM`, ``ψ'[j] = signs[index, j]·ψ[perms[index, j]]``;
            :data:`OP_SIGN`, ``ψ'[j] = signs[index, j]·ψ[j]``; :data:`OP_PHASE`,
            ``ψ'[j] = exp(−i/2·Σ_w phases[index, w]·(1 − 2·bit_w(j)))·ψ[j]`` (RZ(β_w) on
            every wire w at once).
        first_complex: index of the first :data:`OP_COMPLEX` or :data:`OP_PHASE`
            instruction (G if none); before it the state is real and evolved in real
            arithmetic.
        mats: ``[M, 2, 2, 2]`` matrices, last axis (real, imaginary) part.
        perms: ``[P, 2^n]`` int64 gather indices; ``signs``: ``[P, 2^n]`` ±1 in the
            features' dtype.
        phases: ``[T, n]`` RZ angles of the phase instructions (None: there are none).

    Returns:
        ``(z [B, n], saved)`` with ``saved`` what :func:`general_backward` needs (the
        final states in each group's lane layout, the norms, the :class:`Lease` that owns
        the states' memory, the phase tables and how the rows were grouped: keep the
        whole tuple), or ``None`` when some row needs the torch
        encoder (see :func:`encoded_zx_forward`).
    """
    batch = features.shape[0]
    feats = _as_array(features)
    dim = 2**n
    complex_ = first_complex < prog.shape[0]
    out = np.empty((batch, n), feats.dtype)
    lease = Lease()
    work_r = lease.array((batch, dim), feats.dtype)
    work_i = lease.array((batch, dim if complex_ else 1), feats.dtype)
    norms = np.zeros(batch)
    cap = LANES
    threads = _threads(batch)
    phase_r, phase_i = _phase_tables(phases, n, feats.dtype, lease)
    _run_split(
        _general_rows, batch, _Rows(feats), n, prog, first_complex, _as_array(mats, feats),
        perms, signs, phase_r, phase_i, _Rows(out), _Rows(norms), _Rows(work_r),
        _Rows(work_i), cap, *(_Scratch(dim * min(cap, batch), feats.dtype) for _ in range(3)),
        threads=threads,
    )
    if not (norms >= 0).all():
        return None
    return torch.from_numpy(out), (
        work_r, work_i, norms, lease, phase_r, phase_i, (threads, cap)
    )


def _phase_tables(phases: torch.Tensor | None, n: int, dtype,
                  lease: Lease | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``[T, 2^n]`` real and imaginary parts of exp(−i/2·Σ_w β_w (1 − 2·bit_w(j))) for the
    angles ``phases`` ``[T, n]`` (one dummy row when there are none), built in float64.
    With a ``lease`` the tables and the float64 scratch come from the buffer pool: fresh
    arrays of this size (MiBs at n = 15) page-fault on every call unless glibc keeps freed
    memory (:mod:`qhead.memory`)."""
    if phases is None or phases.shape[0] == 0:
        return np.ones((1, 1), dtype), np.zeros((1, 1), dtype)
    angles = phases.detach().to(torch.float64).numpy()
    shape = (angles.shape[0], 2**n)

    def owned(kind) -> np.ndarray:
        return np.empty(shape, kind) if lease is None else lease.array(shape, kind)

    if np.dtype(dtype) == np.float64:
        real, imag = owned(np.float64), owned(np.float64)
        _build_phase_tables(angles, real, imag)
        return real, imag
    scratch = Lease()  # the float64 tables go back to the pool on return
    real, imag = scratch.array(shape, np.float64), scratch.array(shape, np.float64)
    _build_phase_tables(angles, real, imag)
    out_r, out_i = owned(dtype), owned(dtype)
    out_r[...] = real
    out_i[...] = imag
    return out_r, out_i


if numba is not None:

    @_jit
    def _build_phase_tables(angles, real, imag):
        """Kronecker products of diag(e^{−iβ/2}, e^{iβ/2}) over the wires, wire 0 the most
        significant bit, by doubling (2^n complex products per table)."""
        for t in range(angles.shape[0]):
            re, im = real[t], imag[t]
            re[0], im[0] = 1.0, 0.0
            size = 1
            for w in range(angles.shape[1]):
                c, s = np.cos(0.5 * angles[t, w]), np.sin(0.5 * angles[t, w])
                for i in range(size - 1, -1, -1):
                    a, b = re[i], im[i]
                    re[2 * i], im[2 * i] = a * c + b * s, b * c - a * s
                    re[2 * i + 1], im[2 * i + 1] = a * c - b * s, b * c + a * s
                size *= 2


def general_backward(
    saved: tuple, features: torch.Tensor, n: int, prog: np.ndarray, first_complex: int,
    mats: torch.Tensor, perms: np.ndarray, signs: np.ndarray, gz: torch.Tensor,
    phase_grad: np.ndarray | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of ``Σ gz·z`` (:func:`general_forward`, ``saved`` its second output,
    ``features`` the same ``[B, N]`` tensor it encoded, ``gz`` ``[B, n]``) w.r.t. the
    features (zero for all-zero rows), ``mats`` ``[M, 2, 2, 2]`` and the phase angles
    ``[T, n]`` (zero for the tables that ``phase_grad`` ``[T]`` marks 0: constant ones),
    by the adjoint method: one backward sweep un-applies every instruction to the final
    state and to ∂L/∂ψ, memory O(2^n) per thread. The rows are grouped (and cut between
    threads) as the forward grouped them: the saved states are in those groups' layout."""
    work_r, work_i, norms, _, phase_r, phase_i, (threads, cap) = saved
    batch, dim = work_r.shape
    mats_np = _as_array(mats, work_r)
    tables = phase_r.shape[0]
    if phase_grad is None:
        phase_grad = np.ones(tables, np.int8)
    feats = _as_array(features, work_r)
    grad = np.empty_like(feats)
    gm = np.zeros((threads, *mats_np.shape), work_r.dtype)
    gp = np.zeros((threads, tables, n), work_r.dtype)
    _run_split(
        _general_grad_rows, batch, _Rows(feats), _Rows(work_r), _Rows(work_i), n, prog,
        first_complex, mats_np, perms, signs, phase_r, phase_i, phase_grad,
        _Rows(_as_array(2 * gz, work_r)),
        _Rows(norms), _Rows(grad), _PerChunk(gm), _PerChunk(gp), _Scratch(dim, work_r.dtype),
        _Scratch(dim, work_r.dtype), cap,
        *(_Scratch(dim * min(cap, batch), work_r.dtype) for _ in range(8)),
        threads=threads,
    )
    return (torch.from_numpy(grad), torch.from_numpy(gm.sum(axis=0)),
            torch.from_numpy(gp.sum(axis=0)))


if numba is not None:
    # ---------------------------------------------------------------- Hadamard frame
    # The kernel of qhead.simulator.walsh (circuits as phases and transforms after a
    # scatter Q).

    @_inline
    def _butterfly2(x0, x1):
        for i in range(x0.shape[0]):
            a, b = x0[i], x1[i]
            x0[i] = a + b
            x1[i] = a - b

    @_inline
    def _butterfly4(x0, x1, x2, x3):
        """Two butterfly levels on four stretches in place (the radix-4 step: half the
        passes over memory of two radix-2 levels; radix 8 measured no faster)."""
        for i in range(x0.shape[0]):
            a, b, c, d = x0[i], x1[i], x2[i], x3[i]
            s0, s1, s2, s3 = a + b, a - b, c + d, c - d
            x0[i] = s0 + s2
            x1[i] = s1 + s3
            x2[i] = s0 - s2
            x3[i] = s1 - s3

    @_inline
    def _wht_lanes(a, n, lanes):
        """a ← WHT(a) in place, unnormalised (H⊗ⁿ·2^(n/2)), over the n bits of the
        amplitude index, for every lane of a group (lanes = 1: a plain vector)."""
        _wht_lanes_from(a, n, lanes, 0)

    @_inline
    def _wht_lanes_from(a, n, lanes, first):
        """:func:`_wht_lanes` over the bits ``first`` … n − 1 only."""
        _wht_lanes_span(a, lanes, first, n)

    @_inline
    def _wht_lanes_span(a, lanes, first, stop):
        """:func:`_wht_lanes` over the bits ``first`` … stop − 1 only."""
        dim = a.shape[0]
        n = stop
        b = first
        while b + 2 <= n:
            h = (1 << b) * lanes
            for base in range(0, dim, 4 * h):
                for c in range(base, base + h, _CHUNK):
                    e = min(c + _CHUNK, base + h)
                    _butterfly4(a[c:e], a[c + h : e + h], a[c + 2 * h : e + 2 * h],
                                a[c + 3 * h : e + 3 * h])
            b += 2
        if b < n:
            h = (1 << b) * lanes
            for base in range(0, dim, 2 * h):
                for c in range(base, base + h, _CHUNK):
                    e = min(c + _CHUNK, base + h)
                    _butterfly2(a[c:e], a[c + h : e + h])

    @_inline
    def _butterfly4_into(out, i, lanes, a0, a1, a2, a3):
        """out[t·lanes + i] = the two lowest butterfly levels of (a0, a1, a2, a3), t < 4:
        the store of a radix-4 step whose inputs were computed in registers (a phase, λ)."""
        p0, p1, p2, p3 = a0 + a1, a0 - a1, a2 + a3, a2 - a3
        out[i] = p0 + p2
        out[lanes + i] = p1 + p3
        out[2 * lanes + i] = p0 - p2
        out[3 * lanes + i] = p1 - p3

    @_inline
    def _phase_lanes(w, re, im, cos, sin, lanes, n):
        """(re, im) ← the lowest two butterfly levels of e^{iΦ}·w (rows of ``lanes``
        values; one level when n = 1): the phase and the first radix-4 pass of the
        complex transform in one sweep."""
        dim = cos.shape[0]
        if n == 1:
            for i in range(lanes):
                x0, x1 = w[i] * cos[0], w[lanes + i] * cos[1]
                y0, y1 = w[i] * sin[0], w[lanes + i] * sin[1]
                re[i], re[lanes + i] = x0 + x1, x0 - x1
                im[i], im[lanes + i] = y0 + y1, y0 - y1
            return
        for j in range(0, dim, 4):
            c0, c1, c2, c3 = cos[j], cos[j + 1], cos[j + 2], cos[j + 3]
            s0, s1, s2, s3 = sin[j], sin[j + 1], sin[j + 2], sin[j + 3]
            at = j * lanes
            x = w[at : at + 4 * lanes]
            r = re[at : at + 4 * lanes]
            m = im[at : at + 4 * lanes]
            for i in range(lanes):
                x0, x1, x2, x3 = x[i], x[lanes + i], x[2 * lanes + i], x[3 * lanes + i]
                a0, a1, a2, a3 = x0 * c0, x1 * c1, x2 * c2, x3 * c3
                _butterfly4_into(r, i, lanes, a0, a1, a2, a3)
                b0, b1, b2, b3 = x0 * s0, x1 * s1, x2 * s2, x3 * s3
                _butterfly4_into(m, i, lanes, b0, b1, b2, b3)

    @_inline
    def _unphase_lanes(w, mr, mi, rho, cos, sin, lanes, phase_grad, dots):
        """The backward through the phase, v = e^{iΦ}·w with w real: ρ = ∂L/∂w =
        μr·cos + μi·sin, ∂L/∂Φ_j += Σ_l w·(μi·cos − μr·sin) and dots[l] = Σ_j w·ρ (ψ₀·λ₀,
        by Parseval). The tables' 2^−n makes the unnormalised transforms' products
        exact."""
        for i in range(lanes):
            dots[i] = 0
        for j in range(cos.shape[0]):
            c, s = cos[j], sin[j]
            at = j * lanes
            x = w[at : at + lanes]
            a = mr[at : at + lanes]
            b = mi[at : at + lanes]
            o = rho[at : at + lanes]
            total = c - c
            for i in range(lanes):
                u = a[i] * c + b[i] * s
                o[i] = u
                total += x[i] * (b[i] * c - a[i] * s)
                dots[i] += x[i] * u
            phase_grad[j] += total

    @_inline
    def _unphase_blocks(w, mr, mi, rho, cos, sin, phase_grad, dots, butterfly):
        """:func:`_unphase_lanes` for a full group (16 lanes, 2^n ≥ 16), 16 amplitudes
        at a time in registers (:func:`_unphase_block`); with ``butterfly`` ρ gets the
        lowest two butterfly levels of its transform too (:func:`_unphase_butterfly_block`)."""
        for i in range(16):
            dots[i] = 0
        if butterfly:
            for j0 in range(0, cos.shape[0], 16):
                _unphase_butterfly_block(w, mr, mi, rho, cos, sin, phase_grad, dots, j0)
        else:
            for j0 in range(0, cos.shape[0], 16):
                _unphase_block(w, mr, mi, rho, cos, sin, phase_grad, dots, j0)

    @_inline
    def _cphase_lanes(sr, si, re, im, cos, sin, lanes, n):
        """(re, im) ← the lowest two butterfly levels of e^{iΦ}·(sr + i·si) (one level
        when n = 1): :func:`_phase_lanes` for a complex state."""
        dim = cos.shape[0]
        if n == 1:
            for i in range(lanes):
                x0, x1, y0, y1 = sr[i], sr[lanes + i], si[i], si[lanes + i]
                a0, a1 = x0 * cos[0] - y0 * sin[0], x1 * cos[1] - y1 * sin[1]
                b0, b1 = x0 * sin[0] + y0 * cos[0], x1 * sin[1] + y1 * cos[1]
                re[i], re[lanes + i] = a0 + a1, a0 - a1
                im[i], im[lanes + i] = b0 + b1, b0 - b1
            return
        for j in range(0, dim, 4):
            c0, c1, c2, c3 = cos[j], cos[j + 1], cos[j + 2], cos[j + 3]
            s0, s1, s2, s3 = sin[j], sin[j + 1], sin[j + 2], sin[j + 3]
            at = j * lanes
            x = sr[at : at + 4 * lanes]
            y = si[at : at + 4 * lanes]
            r = re[at : at + 4 * lanes]
            m = im[at : at + 4 * lanes]
            for i in range(lanes):
                x0, x1, x2, x3 = x[i], x[lanes + i], x[2 * lanes + i], x[3 * lanes + i]
                y0, y1, y2, y3 = y[i], y[lanes + i], y[2 * lanes + i], y[3 * lanes + i]
                a0, a1 = x0 * c0 - y0 * s0, x1 * c1 - y1 * s1
                a2, a3 = x2 * c2 - y2 * s2, x3 * c3 - y3 * s3
                _butterfly4_into(r, i, lanes, a0, a1, a2, a3)
                b0, b1 = x0 * s0 + y0 * c0, x1 * s1 + y1 * c1
                b2, b3 = x2 * s2 + y2 * c2, x3 * s3 + y3 * c3
                _butterfly4_into(m, i, lanes, b0, b1, b2, b3)

    @_inline
    def _cunphase_lanes(pr, pi, mr, mi, cos, sin, lanes, phase_grad):
        """The backward through the phase of a complex state p = pr + i·pi, v = e^{iΦ}·p:
        μ ← e^{−iΦ}·μ in place (λ before the phase) and ∂L/∂Φ_j += Σ_l Re(conj(μ)·i·v)."""
        for j in range(cos.shape[0]):
            c, s = cos[j], sin[j]
            at = j * lanes
            x = pr[at : at + lanes]
            y = pi[at : at + lanes]
            a = mr[at : at + lanes]
            b = mi[at : at + lanes]
            total = c - c
            for i in range(lanes):
                ar, bi, xr, yi = a[i], b[i], x[i], y[i]
                total += bi * (c * xr - s * yi) - ar * (s * xr + c * yi)
                a[i] = ar * c + bi * s
                b[i] = bi * c - ar * s
            phase_grad[j] += total

    @_inline
    def _weighted_lanes(g, n, re, im, lr, li, lanes, top, low, coef):
        """(lr, li) ← the lowest two butterfly levels of λ = (Σ_k g_k Z_k)·(re + i·im)
        (n ≥ 2; tables as :func:`_lambda_lanes`): λ and the first radix-4 pass of its
        transform in one sweep, as :func:`_cphase_lanes` does for a phase."""
        low_bits = _z_tables(g, n, top, low, lanes, coef)
        mask = (1 << low_bits) - 1
        for j in range(0, re.shape[0] // lanes, 4):
            at = j * lanes
            x = re[at : at + 4 * lanes]
            y = im[at : at + 4 * lanes]
            r = lr[at : at + 4 * lanes]
            m = li[at : at + 4 * lanes]
            t0 = ((j >> low_bits) * lanes, (j & mask) * lanes)
            t1 = (((j + 1) >> low_bits) * lanes, ((j + 1) & mask) * lanes)
            t2 = (((j + 2) >> low_bits) * lanes, ((j + 2) & mask) * lanes)
            t3 = (((j + 3) >> low_bits) * lanes, ((j + 3) & mask) * lanes)
            for i in range(lanes):
                d0 = top[t0[0] + i] + low[t0[1] + i]
                d1 = top[t1[0] + i] + low[t1[1] + i]
                d2 = top[t2[0] + i] + low[t2[1] + i]
                d3 = top[t3[0] + i] + low[t3[1] + i]
                a0, a1 = d0 * x[i], d1 * x[lanes + i]
                a2, a3 = d2 * x[2 * lanes + i], d3 * x[3 * lanes + i]
                _butterfly4_into(r, i, lanes, a0, a1, a2, a3)
                b0, b1 = d0 * y[i], d1 * y[lanes + i]
                b2, b3 = d2 * y[2 * lanes + i], d3 * y[3 * lanes + i]
                _butterfly4_into(m, i, lanes, b0, b1, b2, b3)

    @_inline
    def _phase_gradient_lanes(pr, pi, mr, mi, cos, sin, lanes, phase_grad):
        """∂L/∂Φ_j += Σ_l Re(conj(μ)·i·v) with v = e^{iΦ}·p (p = pr + i·pi, μ = mr + i·mi):
        the gradient half of :func:`_cunphase_lanes`, read-only (a loop that reduces per
        row and also stores does not vectorise as well; the rotation goes to
        :func:`_unphase_butterfly_lanes`)."""
        for j in range(cos.shape[0]):
            c, s = cos[j], sin[j]
            at = j * lanes
            x = pr[at : at + lanes]
            y = pi[at : at + lanes]
            a = mr[at : at + lanes]
            b = mi[at : at + lanes]
            total = c - c
            for i in range(lanes):
                total += b[i] * (c * x[i] - s * y[i]) - a[i] * (s * x[i] + c * y[i])
            phase_grad[j] += total

    @_inline
    def _unphase_gradient_blocks(pr, pi, mr, mi, cos, sin, phase_grad):
        """:func:`_phase_gradient_lanes` then :func:`_unphase_butterfly_lanes` for a full
        group (16 lanes, 2^n ≥ 16) in one sweep (:func:`_unphase_gradient_block`)."""
        for j0 in range(0, cos.shape[0], 16):
            _unphase_gradient_block(pr, pi, mr, mi, cos, sin, phase_grad, j0)

    @_inline
    def _unphase_butterfly_lanes(mr, mi, cos, sin, lanes):
        """(mr, mi) ← the lowest two butterfly levels of e^{−iΦ}·(mr + i·mi), in place
        (n ≥ 2): the rotation half of :func:`_cunphase_lanes` and the first radix-4 pass
        of the transform after it in one sweep."""
        for j in range(0, cos.shape[0], 4):
            c0, c1, c2, c3 = cos[j], cos[j + 1], cos[j + 2], cos[j + 3]
            s0, s1, s2, s3 = sin[j], sin[j + 1], sin[j + 2], sin[j + 3]
            at = j * lanes
            a = mr[at : at + 4 * lanes]
            b = mi[at : at + 4 * lanes]
            for i in range(lanes):
                a0, b0 = a[i], b[i]
                a1, b1 = a[lanes + i], b[lanes + i]
                a2, b2 = a[2 * lanes + i], b[2 * lanes + i]
                a3, b3 = a[3 * lanes + i], b[3 * lanes + i]
                u0, v0 = a0 * c0 + b0 * s0, b0 * c0 - a0 * s0
                u1, v1 = a1 * c1 + b1 * s1, b1 * c1 - a1 * s1
                u2, v2 = a2 * c2 + b2 * s2, b2 * c2 - a2 * s2
                u3, v3 = a3 * c3 + b3 * s3, b3 * c3 - a3 * s3
                _butterfly4_into(a, i, lanes, u0, u1, u2, u3)
                _butterfly4_into(b, i, lanes, v0, v1, v2, v3)

    @_inline
    def _wht_vector(a, n):
        """:func:`_wht_lanes` for one vector: the three lowest levels in one sweep of
        eight values (the stretches of the generic passes would be 1–4 values long)."""
        if n < 3:
            _wht_lanes(a, n, 1)
            return
        for j in range(0, a.shape[0], 8):
            x0, x1, x2, x3 = a[j], a[j + 1], a[j + 2], a[j + 3]
            x4, x5, x6, x7 = a[j + 4], a[j + 5], a[j + 6], a[j + 7]
            y0, y1, y2, y3 = x0 + x1, x0 - x1, x2 + x3, x2 - x3
            y4, y5, y6, y7 = x4 + x5, x4 - x5, x6 + x7, x6 - x7
            z0, z1, z2, z3 = y0 + y2, y1 + y3, y0 - y2, y1 - y3
            z4, z5, z6, z7 = y4 + y6, y5 + y7, y4 - y6, y5 - y7
            a[j], a[j + 1], a[j + 2], a[j + 3] = z0 + z4, z1 + z5, z2 + z6, z3 + z7
            a[j + 4], a[j + 5], a[j + 6], a[j + 7] = z0 - z4, z1 - z5, z2 - z6, z3 - z7
        _wht_lanes_from(a, n, 1, 3)

    @_jit
    def _wht(v, n):
        _wht_vector(v, n)

    @_jit
    def _phase_angles(v, phi, n):
        """Per row k: v[k] ← WHT(v[k]) (float64, in place), phi[k] = −½·v[k] reduced to
        [−π, π] in float64 and stored in phi's dtype (float32 trigonometry after it stays
        accurate for any angle)."""
        two_pi = 2 * np.pi
        for k in range(v.shape[0]):
            row = v[k]
            _wht_vector(row, n)
            out = phi[k]
            for j in range(row.shape[0]):
                a = -0.5 * row[j]
                out[j] = a - two_pi * np.floor(a / two_pi + 0.5)

    @_jit
    def _summed_transforms(parts, n):
        """Per row k: parts[k, 0] ← WHT(Σ_t parts[k, t]) (float64, in place): the threads'
        shares of ∂L/∂Φ_k summed, then the transform that gives every mask's sum."""
        for k in range(parts.shape[0]):
            acc = parts[k, 0]
            for t in range(1, parts.shape[1]):
                other = parts[k, t]
                for j in range(acc.shape[0]):
                    acc[j] += other[j]
            _wht_vector(acc, n)

    @_inline
    def _slot(keep, start, stop, size, k):
        """Slot k of a group's saved states (rows start:stop of ``keep``, lane layout)."""
        return keep[start:stop].reshape((keep.shape[1] * (stop - start),))[
            k * size : (k + 1) * size]

    @_jit
    def _walsh_rows(feats, n, tau, leading, cos, sin, out, norms, keep_w, keep_r, keep_i,
                    cap, p, q):
        """The forward of a chunk of rows, in groups of up to ``cap`` (lane layout):
        keep_w gets the encoded state (after the leading transform, if any), slot k of
        keep_r/keep_i the state after segment k, for the backward — or, when they hold
        fewer slots than segments (a forward without backward: two), slot k mod slots."""
        dim = 1 << n
        batch = feats.shape[0]
        segments = cos.shape[0]
        slots = keep_r.shape[1] // dim
        acc = np.empty(cap, p.dtype)
        scale = np.empty(cap, p.dtype)
        start = 0
        while start < batch:
            lanes = _group_size(batch - start, cap)
            size = dim * lanes
            stop = start + lanes
            w = keep_w[start:stop].reshape((size,))
            if not _encode_group(feats[start:stop], norms[start:stop], w, lanes, scale, tau):
                return
            if leading:
                _wht_lanes(w, n, lanes)
            re = _slot(keep_r, start, stop, size, 0)
            im = _slot(keep_i, start, stop, size, 0)
            # The last transform leaves its top level to the measurement's first sweep.
            fused = lanes == 16 and n >= 5
            # A literal lane count for a full group: LLVM vectorises the phase passes'
            # 4-row loops better (alone, 16 rows, one thread: 132 → 83 µs real, 181 → 110
            # µs complex; strongly-entangling's forward at D = 5, batch 32: 4–5 % less).
            if lanes == LANES:
                _phase_lanes(w, re, im, cos[0], sin[0], LANES, n)
            else:
                _phase_lanes(w, re, im, cos[0], sin[0], lanes, n)
            top = n - 1 if fused and segments == 1 else n
            _wht_lanes_span(re, lanes, 2, top)
            _wht_lanes_span(im, lanes, 2, top)
            for k in range(1, segments):
                pr, pi = re, im
                re = _slot(keep_r, start, stop, size, k % slots)
                im = _slot(keep_i, start, stop, size, k % slots)
                if lanes == LANES:
                    _cphase_lanes(pr, pi, re, im, cos[k], sin[k], LANES, n)
                else:
                    _cphase_lanes(pr, pi, re, im, cos[k], sin[k], lanes, n)
                top = n - 1 if fused and k == segments - 1 else n
                _wht_lanes_span(re, lanes, 2, top)
                _wht_lanes_span(im, lanes, 2, top)
            if fused:
                _measured_top_level(re, im, p[:size], q[:size], n, acc, out[start:stop])
            else:
                _z_measure_lanes(re, im, True, p[:size], q[:size], n, lanes, acc,
                                 out[start:stop])
            start = stop

    @_jit
    def _walsh_grad_rows(feats, keep_w, keep_r, keep_i, n, tau, leading, cos, sin, gout,
                         norms, grad, phase_grad, cap, lr, li, rho):
        """The backward of a chunk (groups as :func:`_walsh_rows` made them): the
        features' gradient into grad, Σ over the chunk of ∂L/∂Φ_k(j) into phase_grad
        ``[K, 2^n]``."""
        dim = 1 << n
        batch = feats.shape[0]
        segments = cos.shape[0]
        coef = np.empty(cap, lr.dtype)
        top = np.empty((1 << (n - n // 2)) * cap, lr.dtype)
        low = np.empty((1 << (n // 2)) * cap, lr.dtype)
        dots = np.empty(cap, lr.dtype)
        scale = np.empty(cap, lr.dtype)
        start = 0
        while start < batch:
            lanes = _group_size(batch - start, cap)
            size = dim * lanes
            stop = start + lanes
            w = keep_w[start:stop].reshape((size,))
            mr, mi, r = lr[:size], li[:size], rho[:size]
            # λ = 2·(Σ_k g_k Z_k)χ on the final state χ (gout holds 2·g); then per segment
            # from the last, μ = WHT(λ) and λ ← e^{−iΦ}·μ against the segment's input
            re = _slot(keep_r, start, stop, size, segments - 1)
            im = _slot(keep_i, start, stop, size, segments - 1)
            if n >= 2 and lanes == LANES:  # λ inside the first pass of its transform
                _weighted_lanes(gout[start:stop], n, re, im, mr, mi, LANES, top, low, coef)
                _wht_lanes_from(mr, n, lanes, 2)
                _wht_lanes_from(mi, n, lanes, 2)
            else:
                _lambda_lanes(gout[start:stop], n, re, im, mr, mi, lanes, top, low, coef,
                              True)
                _wht_lanes(mr, n, lanes)
                _wht_lanes(mi, n, lanes)
            for k in range(segments - 1, 0, -1):
                pr = _slot(keep_r, start, stop, size, k - 1)
                pi = _slot(keep_i, start, stop, size, k - 1)
                if n >= 4 and lanes == 16:  # the block intrinsics take 16 lanes
                    _unphase_gradient_blocks(pr, pi, mr, mi, cos[k], sin[k], phase_grad[k])
                    _wht_lanes_from(mr, n, lanes, 2)
                    _wht_lanes_from(mi, n, lanes, 2)
                elif n >= 2:
                    _phase_gradient_lanes(pr, pi, mr, mi, cos[k], sin[k], lanes,
                                          phase_grad[k])
                    _unphase_butterfly_lanes(mr, mi, cos[k], sin[k], lanes)
                    _wht_lanes_from(mr, n, lanes, 2)
                    _wht_lanes_from(mi, n, lanes, 2)
                else:
                    _cunphase_lanes(pr, pi, mr, mi, cos[k], sin[k], lanes, phase_grad[k])
                    _wht_lanes(mr, n, lanes)
                    _wht_lanes(mi, n, lanes)
            if n >= 4 and lanes == 16:
                _unphase_blocks(w, mr, mi, r, cos[0], sin[0], phase_grad[0], dots, leading)
                if leading:
                    _wht_lanes_from(r, n, lanes, 2)  # Qλ₀ = H·ρ
            else:
                _unphase_lanes(w, mr, mi, r, cos[0], sin[0], lanes, phase_grad[0], dots)
                if leading:
                    _wht_lanes(r, n, lanes)
            _project_out_given(grad[start:stop], feats[start:stop], r, norms[start:stop],
                               lanes, dots, scale, tau)
            start = stop


def _transform_threads(rows: int) -> int:
    """Threads for ``rows`` transforms of 2^n float64 values: at least two rows each.
    Handing a thread one row cost more than it saved (two rows at n = 15: 110 µs on one
    thread, 158 µs on two; waking a pool thread costs tens of µs)."""
    return max(1, min(_threads(rows), rows // 2))


def walsh_phase_angles(v: np.ndarray, dtype) -> np.ndarray:
    """Φ_k = −½·WHT(v[k]) for every row of ``v`` ``[K, 2^n]`` (float64; transformed in
    place), reduced to [−π, π] and returned in ``dtype``; the rows split over the torch
    threads, two rows or more each."""
    phi = np.empty(v.shape, dtype)
    _run_split(_phase_angles, v.shape[0], _Rows(v), _Rows(phi), _qubits(v.shape[1]),
               threads=_transform_threads(v.shape[0]))
    return phi


def walsh_hadamard(vector: np.ndarray) -> np.ndarray:
    """``vector`` ← its unnormalised Walsh–Hadamard transform, in place (a 1-D float64
    array of 2^n values; entry m of the result is Σ_j (−1)^{popcount(j & m)}·v_j)."""
    _wht(vector, _qubits(vector.shape[0]))
    return vector


def walsh_forward(features: torch.Tensor, n: int, tau: np.ndarray, leading: bool,
                  cos: np.ndarray, sin: np.ndarray, lease: Lease, keep: bool = True
                  ) -> tuple[torch.Tensor, tuple | None] | None:
    """⟨Z_k⟩ of every wire k of H·diag(e^{iΦ_K})·…·H·diag(e^{iΦ_1})·[H]·Q·
    amplitude_encode(features) (the Hadamard-frame form of a circuit:
    :mod:`qhead.simulator.walsh`).

    Args:
        features: ``[B, N]`` float32/float64 CPU tensor, N ≤ 2^n.
        n: number of qubits.
        tau: ``[2^n]`` int64, Q: amplitude i goes to row ``tau[i]``.
        leading: a transform comes first, on the real encoded state ([H] above).
        cos, sin: ``[K, 2^n]`` cos Φ_k and sin Φ_k times the transforms' factors
            (:func:`qhead.simulator.walsh.phase_tables`), in the features' dtype.
        lease: owns ``cos``/``sin`` and receives the saved states.
        keep: keep every segment's state for :func:`walsh_backward`; False for a forward
            without backward (two states per example, reused: no 2K + 1 to write).

    Returns:
        ``(z [B, n], saved)`` with ``saved`` what :func:`walsh_backward` needs (keep the
        whole tuple: 2K + 1 states per example; None without ``keep``), or None when
        some row needs the torch encoder (a non-finite value, a norm out of range). The
        rows are evolved in groups of up to :data:`LANES`, as by :func:`general_forward`.
    """
    batch = features.shape[0]
    feats = _as_array(features)
    dim, segments = 2**n, cos.shape[0]
    keep_w = lease.array((batch, dim), feats.dtype)
    slots = segments if keep else min(segments, 2)
    keep_r, keep_i = (lease.array((batch, slots * dim), feats.dtype) for _ in range(2))
    out = np.empty((batch, n), feats.dtype)
    norms = np.zeros(batch)
    cap = LANES
    threads = _threads(batch)
    _run_split(
        _walsh_rows, batch, _Rows(feats), n, tau, leading, cos, sin, _Rows(out),
        _Rows(norms), _Rows(keep_w), _Rows(keep_r), _Rows(keep_i), cap,
        *(_Scratch(dim * min(cap, batch), feats.dtype) for _ in range(2)),
        threads=threads,
    )
    if not (norms >= 0).all():
        return None
    if not keep:
        return torch.from_numpy(out), None
    kept = (keep_w, keep_r, keep_i)
    return torch.from_numpy(out), (kept, norms, lease, tau, leading, cos, sin, (threads, cap))


def walsh_backward(saved: tuple, features: torch.Tensor, gz: torch.Tensor
                   ) -> tuple[torch.Tensor, np.ndarray]:
    """Gradients of ``Σ gz·z`` (:func:`walsh_forward`, ``saved`` its second output,
    ``features`` the tensor it encoded, ``gz`` ``[B, n]``): with respect to the features
    (zero for all-zero rows), and WHT(∂L/∂Φ_k) ``[K, 2^n]`` (float64, ∂L/∂Φ_k summed
    over the batch, then transformed: entry m is Σ_j ∂L/∂Φ_k(j)·(−1)^{popcount(j & m)})."""
    keep, norms, _, tau, leading, cos, sin, (threads, cap) = saved
    batch, dim = keep[0].shape
    n = _qubits(dim)
    dtype = keep[0].dtype
    feats = _as_array(features, keep[0])
    grad = np.empty_like(feats)
    segments = cos.shape[0]
    phase_grad = np.zeros((segments, threads, dim))
    _run_split(
        _walsh_grad_rows, batch, _Rows(feats), *(_Rows(k) for k in keep), n, tau, leading,
        cos, sin, _Rows(_as_array(2 * gz, keep[0])), _Rows(norms), _Rows(grad),
        _PerChunk(phase_grad.transpose(1, 0, 2)), cap,
        *(_Scratch(dim * min(cap, batch), dtype) for _ in range(3)),
        threads=threads,
    )
    _run_split(_summed_transforms, segments, _Rows(phase_grad), n,
               threads=_transform_threads(segments))
    return torch.from_numpy(grad), phase_grad[:, 0]
