"""Gate lists (circuit descriptions) and their fast batched execution.

A circuit is a sequence of :class:`Op` (gate name, wires, index of its angle in a
weight tensor). The same list is executed here, translated to PennyLane by
``qhead.quantum.pennylane_backend``, linted by ``qhead.quantum.lint`` and drawn by
``qhead.quantum.draw_circuit``.

Execution (:func:`run_circuit`) compiles the list once into a plan (cached):

* runs of one-qubit gates are fused per wire into one 2×2 matrix each (so H·RY is a
  single pass over the state) and applied with a real-valued fast path when every
  fused matrix is real;
* runs of CNOTs become one precomputed gather index (one pass instead of n−1);
* diagonal gates (Z, RZ) and permutations (X, CNOT) at the end of the circuit do not
  change |ψ|² up to a permutation: diagonal ones are dropped (they are phases) and the
  permutation is folded into the Z-eigenvalue table, so the state is never moved;
* circuits of one-qubit gates only (Ansatz 1) are not simulated at all: ⟨Z_k⟩ follows
  from the 2×2 reduced density matrix of wire k of the encoded state, an O(N·m)
  formula (for RY it is ⟨Z_k⟩ = cos θ_k·⟨Z_k⟩₀ − sin θ_k·⟨X_k⟩₀, θ_k summed over layers).

``optimize=False`` applies every gate one by one instead; tests use it as an internal
reference next to PennyLane.

:func:`run_encoded_circuit` (used by ``AEVQC``) starts from the features instead of a
state and, on CPU, hands the two circuit shapes of the paper's heads to the compiled
kernels of :mod:`qhead.simulator.kernels`, encoding included.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from qhead.simulator import kernels
from qhead.simulator.encoding import amplitude_encode
from qhead.simulator.gates import (
    apply_matrix,
    apply_permutation,
    cnot,
    complex_dtype,
    hadamard,
    hadamard_matrix,
    rotation_matrix,
    rx,
    ry,
    rz,
)
from qhead.simulator.measure import expval_z, probabilities, sample_expval_z, z_signs

__all__ = [
    "GATES",
    "GateSpec",
    "Op",
    "ansatz1_closed_form",
    "product_expval_z",
    "run_circuit",
    "run_encoded_circuit",
    "validate_ops",
]


@dataclass(frozen=True)
class GateSpec:
    """What the simulator, the linter and the PennyLane backend need to know about a gate."""

    n_wires: int
    parametrized: bool
    real: bool  # real matrix: keeps a real state real
    diagonal: bool  # diagonal in the computational basis
    permutation: bool  # permutes basis states (X, CNOT)
    axis: str | None = None  # rotation axis for RX/RY/RZ (used to merge rotations)


GATES: dict[str, GateSpec] = {
    "H": GateSpec(1, False, True, False, False),
    "X": GateSpec(1, False, True, False, True),
    "Z": GateSpec(1, False, True, True, False),
    "RX": GateSpec(1, True, False, False, False, "X"),
    "RY": GateSpec(1, True, True, False, False, "Y"),
    "RZ": GateSpec(1, True, False, True, False, "Z"),
    "CNOT": GateSpec(2, False, True, False, True),
}


@dataclass(frozen=True)
class Op:
    """One gate of a circuit.

    Attributes:
        name: a key of :data:`GATES` (H, X, Z, RX, RY, RZ, CNOT).
        wires: the wires it acts on, ``(wire,)`` or ``(control, target)``.
        param: index of its angle in the weight tensor (e.g. ``(layer, wire)``), or
            ``None`` for a fixed gate.
    """

    name: str
    wires: tuple[int, ...]
    param: tuple[int, ...] | None = None

    def __str__(self) -> str:
        wires = ",".join(str(w) for w in self.wires)
        angle = "" if self.param is None else f"(θ{list(self.param)})"
        return f"{self.name}{angle}@{wires}"


def validate_ops(ops: Sequence[Op], n_wires: int, weight_shape: Sequence[int]) -> None:
    """Checks gate names, wires and parameter indices; raises ``ValueError`` otherwise."""
    for op in ops:
        spec = GATES.get(op.name)
        if spec is None:
            raise ValueError(f"unknown gate {op.name!r} in {op}; allowed: {', '.join(GATES)}")
        if len(op.wires) != spec.n_wires or len(set(op.wires)) != spec.n_wires:
            raise ValueError(f"{op}: {op.name} acts on {spec.n_wires} distinct wire(s)")
        if any(not 0 <= w < n_wires for w in op.wires):
            raise ValueError(f"{op}: wires must lie in 0..{n_wires - 1}")
        if spec.parametrized != (op.param is not None):
            need = "needs an" if spec.parametrized else "takes no"
            raise ValueError(f"{op}: {op.name} {need} angle")
        if op.param is not None and (
            len(op.param) != len(weight_shape)
            or any(not 0 <= i < s for i, s in zip(op.param, weight_shape, strict=True))
        ):
            raise ValueError(f"{op}: parameter index outside weights {tuple(weight_shape)}")


def _flat_index(param: tuple[int, ...], shape: tuple[int, ...]) -> int:
    flat = 0
    for i, s in zip(param, shape, strict=True):
        flat = flat * s + i
    return flat


_FIXED = {
    "H": lambda dt, dev: hadamard_matrix(dt, dev),
    "X": lambda dt, dev: torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=dt, device=dev),
    "Z": lambda dt, dev: torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=dt, device=dev),
}


@dataclass
class _Local:
    """One-qubit gates on several wires, fused per wire."""

    wires: list[int]
    # slots[j] = {gate name: (positions in `wires`, flat param indices or None)}
    slots: list[dict[str, tuple[list[int], list[int] | None]]]
    real: bool


@dataclass
class _Perm:
    ops: tuple[Op, ...]


def _permutation_index(n: int, ops: Sequence[Op]) -> torch.Tensor:
    index = torch.arange(2**n)
    for op in ops:
        gate = torch.arange(2**n)
        if op.name == "CNOT":
            cbit, tbit = (1 << (n - 1 - w) for w in op.wires)
            gate = torch.where(gate & cbit != 0, gate ^ tbit, gate)
        elif op.name == "X":
            gate = gate ^ (1 << (n - 1 - op.wires[0]))
        else:  # pragma: no cover - guarded by _compile
            raise AssertionError(op)
        index = index[gate]
    return index


@dataclass
class _Plan:
    n: int
    wires: tuple[int, ...]
    shape: tuple[int, ...]
    body: list[_Local | _Perm]
    tail_perm: tuple[Op, ...]
    product: _Local | None  # set when the circuit has one-qubit gates only
    uses_no_params: bool = False
    product_needs_x: bool = True
    _cache: dict = field(default_factory=dict)

    def index(self, ops: tuple[Op, ...], device) -> torch.Tensor:
        key = ("perm", ops, str(device))
        if key not in self._cache:
            self._cache[key] = _permutation_index(self.n, ops).to(device)
        return self._cache[key]

    def signs(self, dtype, device) -> torch.Tensor:
        key = ("signs", dtype, str(device))
        if key not in self._cache:
            perm = _permutation_index(self.n, self.tail_perm) if self.tail_perm else None
            self._cache[key] = z_signs(self.n, self.wires, dtype, device, permutation=perm)
        return self._cache[key]


def _local_from(ops: Sequence[Op], shape: tuple[int, ...]) -> _Local:
    per_wire: dict[int, list[Op]] = {}
    for op in ops:
        per_wire.setdefault(op.wires[0], []).append(op)
    wires = sorted(per_wire)
    depth = max(len(v) for v in per_wire.values())
    slots: list[dict[str, tuple[list[int], list[int] | None]]] = []
    for j in range(depth):
        slot: dict[str, tuple[list[int], list[int] | None]] = {}
        for pos, w in enumerate(wires):
            if j < len(per_wire[w]):
                op = per_wire[w][j]
                positions, params = slot.setdefault(
                    op.name, ([], [] if op.param is not None else None)
                )
                positions.append(pos)
                if params is not None:
                    params.append(_flat_index(op.param, shape))
        slots.append(slot)
    real = all(GATES[op.name].real for op in ops)
    return _Local(wires, slots, real)


@functools.lru_cache(maxsize=128)
def _compile(ops: tuple[Op, ...], n: int, wires: tuple[int, ...], shape: tuple[int, ...]) -> _Plan:
    # Trailing diagonal gates and permutations only permute |ψ|²: drop / fold them.
    cut = len(ops)
    while cut > 0 and (GATES[ops[cut - 1].name].diagonal or GATES[ops[cut - 1].name].permutation):
        cut -= 1
    tail_perm = tuple(op for op in ops[cut:] if GATES[op.name].permutation)
    body_ops = ops[:cut]
    product = None
    if all(GATES[op.name].n_wires == 1 for op in ops):
        # Only gates on measured wires matter; trailing diagonals change nothing.
        kept = [op for op in ops[:cut] if op.wires[0] in wires] + [
            op for op in ops[cut:] if op.wires[0] in wires and op.name == "X"
        ]
        product = _local_from(kept, shape) if kept else _Local([], [], True)
    body: list[_Local | _Perm] = []
    run: list[Op] = []
    run_two = False
    for op in body_ops:
        two = GATES[op.name].n_wires == 2
        if run and run_two != two:
            body.append(_Perm(tuple(run)) if run_two else _local_from(run, shape))
            run = []
        run.append(op)
        run_two = two
    if run:
        body.append(_Perm(tuple(run)) if run_two else _local_from(run, shape))
    used = [op for op in body_ops if op.param is not None]
    if product is not None:
        used = [op for s in product.slots for _, p in s.values() if p for op in p]
    # Products of {RX, X, Z} keep Z within span{Z, Y} and products of {RZ, Z, X} within
    # span{Z}: ⟨Y⟩ = 0 for real states, so ⟨X⟩₀ is not needed.
    names = {op.name for op in ops}
    needs_x = not (names <= {"RX", "X", "Z"} or names <= {"RZ", "Z", "X"})
    return _Plan(
        n, wires, shape, body, tail_perm, product,
        uses_no_params=not used, product_needs_x=needs_x,
    )


def _fused_matrices(local: _Local, weights: torch.Tensor, real_dtype: torch.dtype) -> torch.Tensor:
    """``[len(local.wires), 2, 2]``: per wire, the product of its gates (last one leftmost)."""
    dtype = real_dtype if local.real else complex_dtype(real_dtype)
    device = weights.device
    count = len(local.wires)
    eye = torch.eye(2, dtype=dtype, device=device).expand(count, 2, 2)
    flat = weights.reshape(-1).to(real_dtype)
    fused = None
    for slot in local.slots:
        step = eye
        for name, (positions, params) in slot.items():
            if params is not None:
                angles = flat[_index_tensor(params, device)]
                mats = rotation_matrix(name, angles).to(dtype)
            else:
                mats = _FIXED[name](real_dtype, device).to(dtype).expand(len(positions), 2, 2)
            if len(positions) == count:  # one gate on every wire: no identity to fill
                step = mats if positions == list(range(count)) else mats[_inverse(positions)]
            else:
                step = step.index_put((_index_tensor(positions, device),), mats)
        fused = step if fused is None else step @ fused
    return eye if fused is None else fused


_INDEX_TENSORS: dict = {}


def _index_tensor(values: list[int], device) -> torch.Tensor:
    """A cached index tensor (building one from a list on every call costs more than the op)."""
    key = (tuple(values), str(device))
    tensor = _INDEX_TENSORS.get(key)
    if tensor is None:
        tensor = _INDEX_TENSORS[key] = torch.tensor(values, dtype=torch.long, device=device)
    return tensor


def _inverse(positions: list[int]) -> list[int]:
    inverse = [0] * len(positions)
    for i, p in enumerate(positions):
        inverse[p] = i
    return inverse


# One-qubit gates on adjacent wires are applied together as one 2^k × 2^k matrix (the
# Kronecker product of the fused per-wire matrices) with k ≤ _BLOCK: one matrix product
# reads the state once instead of k elementwise passes, each of which would also need
# its own backward. For n = 15 a full layer is three 32 × 32 products.
_BLOCK = 5


def _blocks(wires: list[int]) -> list[tuple[int, int]]:
    """Splits sorted wires into (first position, count) runs of adjacent wires, ≤ _BLOCK each."""
    runs: list[list[int]] = []
    for pos, w in enumerate(wires):
        if runs and wires[runs[-1][-1]] == w - 1:
            runs[-1].append(pos)
        else:
            runs.append([pos])
    out = []
    for run in runs:
        pieces = -(-len(run) // _BLOCK)
        size, extra = divmod(len(run), pieces)
        start = run[0]
        for i in range(pieces):
            k = size + (1 if i < extra else 0)
            out.append((start, k))
            start += k
    return out


def _rotate(flat: torch.Tensor, wires: int) -> torch.Tensor:
    """Moves the last ``wires`` wires of ``[B, 2^n]`` to the front (one copy)."""
    batch, dim = flat.shape
    tail = 2**wires
    return flat.view(batch, dim // tail, tail).transpose(1, 2).reshape(batch, dim)


def _apply_chunks(
    flat: torch.Tensor, n: int, chunks: list[tuple[int, torch.Tensor]]
) -> torch.Tensor:
    """Applies ``(first wire, 2^k × 2^k matrix)`` for disjoint wire chunks to ``[B, 2^n]``.

    Each matrix acts on the last wires of the layout as one plain matrix product
    ``[B·2^(n−k), 2^k] @ M^T`` (no copy); the layout is rotated between chunks (one
    copy each) so that the next chunk is last, and rotated back at the end.
    """
    batch = flat.shape[0]
    shift = 0  # the layout is the original one with its last `shift` wires moved to the front
    for first, matrix in sorted(chunks, key=lambda c: -c[0]):
        k = matrix.shape[-1].bit_length() - 1
        target = n - first - k
        if target != shift:
            flat = _rotate(flat, (target - shift) % n)
            shift = target
        if matrix.is_complex() != flat.is_complex():
            dtype = matrix.dtype if matrix.is_complex() else flat.dtype
            flat, matrix = flat.to(dtype), matrix.to(dtype)
        flat = (flat.reshape(-1, 2**k) @ matrix.T).reshape(batch, -1)
    if shift % n:
        flat = _rotate(flat, n - shift)
    return flat


def _apply_local(state: torch.Tensor, local: _Local, weights: torch.Tensor) -> torch.Tensor:
    n = state.dim() - 1
    real_dtype = state.real.dtype if state.is_complex() else state.dtype
    mats = _fused_matrices(local, weights, real_dtype)
    position = {w: i for i, w in enumerate(local.wires)}
    eye = torch.eye(2, dtype=mats.dtype, device=mats.device)
    chunks = []
    for start, k in _blocks(list(range(n))):
        span = range(start, start + k)
        if not any(w in position for w in span):
            continue
        block = None
        for w in span:
            m = mats[position[w]] if w in position else eye
            block = m if block is None else torch.kron(block, m)
        chunks.append((start, block))
    flat = _apply_chunks(state.reshape(state.shape[0], -1), n, chunks)
    return flat.reshape(state.shape)


_HADAMARD_BLOCKS: dict = {}


def _hadamard_all(flat: torch.Tensor, n: int) -> torch.Tensor:
    """H^{⊗n} applied to ``[B, 2^n]`` (a Walsh–Hadamard transform) in ≤5-wire matrix blocks."""
    chunks = []
    for start, k in _blocks(list(range(n))):
        key = (k, flat.dtype, str(flat.device))
        block = _HADAMARD_BLOCKS.get(key)
        if block is None:
            block = torch.ones(1, 1, dtype=flat.dtype, device=flat.device)
            h = hadamard_matrix(flat.dtype, flat.device)
            for _ in range(k):
                block = torch.kron(block, h)
            _HADAMARD_BLOCKS[key] = block
        chunks.append((start, block))
    return _apply_chunks(flat, n, chunks)


# On CUDA, from this many qubits on, ⟨X_k⟩ for all k comes from one Walsh–Hadamard
# transform (three 32×32 matrix products at n = 15) instead of one elementwise pass per
# wire (n kernel launches each way). On CPU the per-wire passes measured faster.
_WHT_FROM = 6
_WHT_ON_CPU = False


# On CPU, ⟨Z_k⟩ and ⟨X_k⟩ come from small Gram matrices (reduced density matrices of
# groups of adjacent wires), each one batched matrix product that reads the state once:
# groups of _TOP wires from the top, G = V Vᵀ with V the state viewed as
# [B·2^a, 2^g, 2^r] (efficient while the contiguous rows 2^r are long, r ≥ _MIN_ROW),
# and the remaining ≤ _MIN_ROW + _TOP − 1 bottom wires from one G = VᵀV of
# [B, 2^(n−t), 2^t]. Measured at n = 15, batch 32, one thread: ~8 ms for all 15 wires
# both ways, instead of ~26 ms forward / 45 ms backward with one strided pass per wire.
_TOP = 2
_MIN_ROW = 5


def _groups(n: int) -> list[tuple[int, int, bool]]:
    """Covers wires 0..n−1 with ``(first wire, size, bottom)`` groups (see above)."""
    out = []
    first = 0
    while n - first - _TOP >= _MIN_ROW:
        out.append((first, _TOP, False))
        first += _TOP
    out.append((first, n - first, True))
    return out


@functools.lru_cache(maxsize=64)
def _group_tables(g: int) -> torch.Tensor:
    """``[2g, 2^g, 2^g]``: the matrices of Z_j (first g) and X_j (last g) on g wires."""
    index = torch.arange(2**g)
    eye = torch.eye(2**g, dtype=torch.float64)
    z = [torch.diag((1 - 2 * ((index >> (g - 1 - j)) & 1)).double()) for j in range(g)]
    x = [eye[index ^ (1 << (g - 1 - j))] for j in range(g)]
    return torch.stack(z + x)


def _group_view(flat: torch.Tensor, n: int, first: int, g: int, bottom: bool) -> torch.Tensor:
    batch = flat.shape[0]
    if bottom:
        return flat.view(batch, 2 ** (n - g), 2**g)
    return flat.view(batch * 2**first, 2**g, 2 ** (n - first - g))


class _ZX(torch.autograd.Function):
    """⟨Z_k⟩ and ⟨X_k⟩ of a real state for m wires, with a hand-written backward.

    On CPU every wire's Z and X come from the Gram matrix G of its wire group
    (:func:`_groups`): z_k = tr(G Z_k), x_k = tr(G X_k), one batched matrix product per
    group. On CUDA, z = ψ² @ signs and x comes from one Walsh–Hadamard transform
    φ = H^{⊗n} ψ (a unitary on the other wires leaves wire k's reduced state unchanged,
    so ⟨X_k⟩_ψ = ⟨Z_k⟩_φ for every k at once).
    Backward: ∂ tr(G P)/∂V = 2 P V (or 2 V P for G = VᵀV) for the symmetric P =
    Σ_k gz_k Z_k + gx_k X_k of each group, accumulated in place.
    """

    @staticmethod
    def forward(ctx, flat, signs, wires, need_x):
        n = flat.shape[1].bit_length() - 1
        ctx.n, ctx.need_x, ctx.wires = n, need_x, wires
        ctx.kernel = kernels.usable(flat)
        if ctx.kernel:
            z_all, x_all = kernels.zx_forward(flat)
            ctx.save_for_backward(flat, signs, None)
            z = _select_wires(z_all, wires)
            return z, (_select_wires(x_all, wires) if need_x else torch.zeros_like(z))
        if flat.is_cuda or _WHT_ON_CPU:
            z = flat.square() @ signs
            phi = None
            if need_x:
                phi = _hadamard_all(flat, n)
                x = phi.square() @ signs
            else:
                x = torch.zeros_like(z)
            ctx.save_for_backward(flat, signs, phi)
            ctx.plan = None
            return z, x
        batch = flat.shape[0]
        z = flat.new_empty(batch, len(wires))
        x = torch.zeros_like(z)
        plan = []
        for first, g, bottom in _groups(n):
            cols = [i for i, w in enumerate(wires) if first <= w < first + g]
            if not cols:
                continue
            local = [wires[i] - first for i in cols]
            tables = _group_tables(g).to(flat)
            view = _group_view(flat, n, first, g, bottom)
            gram = view.transpose(1, 2) @ view if bottom else view @ view.transpose(1, 2)
            gram = gram.view(batch, -1, 2**g, 2**g).sum(1)
            vals = torch.einsum("bij,kij->bk", gram, tables)  # [B, 2g]
            z[:, cols] = vals[:, local]
            if need_x:
                x[:, cols] = vals[:, [g + j for j in local]]
            plan.append((first, g, bottom, cols, local))
        ctx.plan = plan
        ctx.save_for_backward(flat, signs, None)
        return z, x

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gz, gx):
        flat, signs, phi = ctx.saved_tensors
        n = ctx.n
        if gz is None:
            gz = torch.zeros(flat.shape[0], len(ctx.wires), dtype=flat.dtype, device=flat.device)
        if ctx.kernel:
            if gx is None or not ctx.need_x:
                gx = torch.zeros_like(gz)
            gz_all = _to_all_wires(gz.to(flat.dtype), ctx.wires, n)
            gx_all = _to_all_wires(gx.to(flat.dtype), ctx.wires, n)
            return kernels.zx_backward(flat, gz_all, gx_all), None, None, None
        if ctx.plan is None:
            grad = 2 * flat * (gz @ signs.T)
            if phi is not None and gx is not None:
                grad += 2 * _hadamard_all(phi * (gx @ signs.T), n)
            return grad, None, None, None
        batch = flat.shape[0]
        grad = None
        for first, g, bottom, cols, local in ctx.plan:
            tables = _group_tables(g).to(flat)
            coef = flat.new_zeros(batch, 2 * g)
            coef[:, local] = gz[:, cols]
            if ctx.need_x and gx is not None:
                coef[:, [g + j for j in local]] = gx[:, cols]
            mix = 2 * torch.einsum("bk,kij->bij", coef, tables)  # [B, 2^g, 2^g], symmetric
            view = _group_view(flat, n, first, g, bottom)
            if not bottom and first:
                mix = mix.repeat_interleave(2**first, dim=0)
            if grad is None:
                grad = view @ mix if bottom else mix @ view
                grad = grad.reshape(flat.shape)
            else:
                gview = _group_view(grad, n, first, g, bottom)
                if bottom:
                    gview.baddbmm_(view, mix)
                else:
                    gview.baddbmm_(mix, view)
        if grad is None:
            grad = torch.zeros_like(flat)
        return grad, None, None, None


def z_and_x(state: torch.Tensor, wires: Sequence[int], need_x: bool = True):
    """⟨Z_k⟩₀ and ⟨X_k⟩₀ of a real state for each wire k of ``wires``: two ``[B, m]``."""
    if state.is_complex():
        raise ValueError("z_and_x needs a real state (amplitude-encoded states are real)")
    n = state.dim() - 1
    flat = state.reshape(state.shape[0], -1)
    signs = z_signs(n, wires, flat.dtype, flat.device)
    return _ZX.apply(flat, signs, tuple(int(w) for w in wires), need_x)


def product_expval_z(
    state: torch.Tensor, matrices: torch.Tensor, wires: Sequence[int], need_x: bool = True
) -> torch.Tensor:
    """⟨Z_k⟩ after one one-qubit unitary per measured wire, without evolving the state.

    With ρ_k = [[a, c], [c, b]] the reduced density matrix of wire k of the real state
    ψ (a = P(0), b = P(1), 2c = ⟨X_k⟩₀) and M the wire's unitary,
    ⟨Z_k⟩ = (|m00|²−|m10|²)·a + (|m01|²−|m11|²)·b + 2·Re(m00 m01* − m10 m11*)·c.
    Cost O(2^n·m) instead of O(2^n·gates).

    Args:
        state: real state ``[B] + [2] * n``.
        matrices: ``[m, 2, 2]`` (real or complex), one per wire of ``wires``.
        wires: the m measured wires.
        need_x: set False when the X coefficient is structurally zero (skips m passes).

    Returns:
        ``[B, m]``.
    """
    z0, x0 = z_and_x(state, wires, need_x)
    return _product_from_zx(z0, x0, matrices, need_x)


def _product_from_zx(
    z0: torch.Tensor, x0: torch.Tensor, matrices: torch.Tensor, need_x: bool
) -> torch.Tensor:
    """The formula of :func:`product_expval_z` from ⟨Z_k⟩₀, ⟨X_k⟩₀ (``[B, m]`` each)."""
    m = matrices
    # Whole-tensor ops rather than one op per matrix entry: with m ≤ 15 wires these
    # tensors are tiny and the cost is the number of ops (forward and backward).
    # Rows of d: (|m00|² − |m10|², |m01|² − |m11|²) = the coefficients of a = P(0) and
    # b = P(1); a = (1 + z0)/2 and b = (1 − z0)/2 because the state is normalised.
    sq = m.abs().square() if m.is_complex() else m.square()
    d = sq[:, 0] - sq[:, 1]  # [m, 2]
    halves = torch.tensor([[0.5, 0.5], [0.5, -0.5]], dtype=d.dtype, device=d.device)
    const, slope = (d @ halves).unbind(1)
    out = torch.addcmul(const, slope, z0)
    if not need_x:
        return out
    prod = m[:, :, 0] * m[:, :, 1].conj()  # [m, 2]: m00 m01*, m10 m11*
    half_cross = (prod[:, 0] - prod[:, 1]).real  # = cross/2
    return torch.addcmul(out, half_cross, x0)


def ansatz1_closed_form(
    state: torch.Tensor, weights: torch.Tensor, gate: str = "RY", wires: Sequence[int] | None = None
) -> torch.Tensor:
    """Exact ⟨Z_k⟩ of Ansatz 1 (D layers of one rotation per qubit) on a real state.

    Rotations about one axis merge, so only θ_k = Σ_d weights[d, k] matters:

    * RY: ⟨Z_k⟩ = cos θ_k·⟨Z_k⟩₀ − sin θ_k·⟨X_k⟩₀
    * RX: ⟨Z_k⟩ = cos θ_k·⟨Z_k⟩₀ + sin θ_k·⟨Y_k⟩₀ = cos θ_k·⟨Z_k⟩₀ (⟨Y⟩₀ = 0 for real ψ)
    * RZ: ⟨Z_k⟩ = ⟨Z_k⟩₀

    where ⟨·⟩₀ are taken in the encoded state. This is the "dequantized" head: a
    classical O(N·m) computation, numerically equal to the circuit.

    Args:
        state: real state ``[B] + [2] * n``.
        weights: ``[D, n]``.
        gate: "RX", "RY" or "RZ".
        wires: measured wires (default all n).

    Returns:
        ``[B, m]``.
    """
    if gate not in ("RX", "RY", "RZ"):
        raise ValueError(f"gate must be one of RX, RY, RZ, got {gate!r}")
    n = state.dim() - 1
    wires = list(range(n)) if wires is None else list(wires)
    theta = weights.sum(dim=0)[wires].to(state.dtype)  # [m]
    z0, x0 = z_and_x(state, wires, need_x=gate == "RY")
    if gate == "RZ":
        return z0 + 0 * theta  # keeps the weights in the graph (zero gradient)
    if gate == "RX":
        return torch.cos(theta) * z0
    return torch.cos(theta) * z0 - torch.sin(theta) * x0


_APPLY = {
    "H": lambda s, op, w: hadamard(s, op.wires[0]),
    "X": lambda s, op, w: apply_matrix(s, _FIXED["X"](s.real.dtype, s.device), op.wires[0]),
    "Z": lambda s, op, w: apply_matrix(s, _FIXED["Z"](s.real.dtype, s.device), op.wires[0]),
    "RX": lambda s, op, w: rx(s, w[op.param], op.wires[0]),
    "RY": lambda s, op, w: ry(s, w[op.param], op.wires[0]),
    "RZ": lambda s, op, w: rz(s, w[op.param], op.wires[0]),
    "CNOT": lambda s, op, w: cnot(s, *op.wires),
}


def run_circuit(
    state: torch.Tensor,
    ops: Sequence[Op],
    weights: torch.Tensor,
    wires: Sequence[int],
    *,
    shots: int | None = None,
    generator: torch.Generator | None = None,
    optimize: bool = True,
) -> torch.Tensor:
    """Applies ``ops`` to ``state`` and measures ⟨Z⟩ on ``wires``.

    Args:
        state: ``[B] + [2] * n`` (real for the amplitude-encoded input).
        ops: the circuit.
        weights: angles, indexed by ``Op.param`` (shared by the batch).
        wires: the m measured wires, in output order.
        shots: ``None`` for exact expectations, else samples per example
            (straight-through gradient, see :func:`sample_expval_z`).
        generator: random generator for shot sampling.
        optimize: use the compiled plan (fused gates, permutation folding, closed
            form); ``False`` applies each gate in turn (reference).

    Returns:
        ``[B, m]``.
    """
    n = state.dim() - 1
    wires = tuple(int(w) for w in wires)
    ops = tuple(ops)
    if not optimize:
        for op in ops:
            state = _APPLY[op.name](state, op, weights)
        if shots is None:
            return expval_z(state, wires)
        return sample_expval_z(state, wires, shots, generator)
    plan = _compile(ops, n, wires, tuple(weights.shape))
    out = _run_plan(plan, state, weights, wires, shots, generator)
    if plan.uses_no_params and weights.requires_grad:
        # Keep the weights in the graph so they get a zero gradient, not None (DDP and
        # optimisers expect every parameter to be used).
        out = out + 0 * weights.sum().to(out.dtype)
    return out


def _product_matrices(plan: _Plan, weights: torch.Tensor, dtype, wires) -> torch.Tensor:
    """``[m, 2, 2]``: the fused one-qubit unitary of each measured wire (product plans)."""
    return _per_wire(_fused_matrices(plan.product, weights, dtype), plan.product.wires, wires)


def _per_wire(mats: torch.Tensor, gate_wires: list[int], wires) -> torch.Tensor:
    """Rows of ``mats`` (one per wire of ``gate_wires``) for ``wires``, identity elsewhere."""
    if list(wires) == gate_wires:
        return mats
    eye = torch.eye(2, dtype=mats.dtype, device=mats.device)
    position = {w: i for i, w in enumerate(gate_wires)}
    return torch.stack([mats[position[w]] if w in position else eye for w in wires])


def _ry_angle_map(plan: _Plan, wires, dtype, device) -> torch.Tensor | None:
    """``[m, P]`` 0/1 matrix summing each measured wire's RY angles, when the product
    circuit has RY gates only (Ansatz 1); else None."""
    key = ("ry_map", wires, dtype, str(device))
    if key not in plan._cache:
        local, result = plan.product, None
        if all(set(slot) <= {"RY"} for slot in local.slots):
            result = torch.zeros(len(wires), math.prod(plan.shape), dtype=dtype)
            row = {w: i for i, w in enumerate(wires)}
            for slot in local.slots:
                for positions, params in slot.values():
                    for pos, param in zip(positions, params, strict=True):
                        if local.wires[pos] in row:
                            result[row[local.wires[pos]], param] += 1
            result = result.to(device)
        plan._cache[key] = result
    return plan._cache[key]


def _run_plan(plan, state, weights, wires, shots, generator) -> torch.Tensor:
    real_dtype = state.real.dtype if state.is_complex() else state.dtype
    if plan.product is not None and shots is None and not state.is_complex():
        full = _product_matrices(plan, weights, real_dtype, wires)
        return product_expval_z(state, full, wires, need_x=plan.product_needs_x)
    for segment in plan.body:
        if isinstance(segment, _Perm):
            state = apply_permutation(state, plan.index(segment.ops, state.device))
        else:
            state = _apply_local(state, segment, weights)
    signs = plan.signs(real_dtype, state.device)
    if shots is None:
        return probabilities(state) @ signs
    return sample_expval_z(state, wires, shots, generator, signs=signs)


class _Declined(Exception):
    """A fused kernel left this batch to the torch path (see :func:`run_encoded_circuit`)."""


class _EncodedZX(torch.autograd.Function):
    """⟨Z_k⟩₀, ⟨X_k⟩₀ of ``amplitude_encode(features)`` by the CPU kernel, with the
    fused backward (encoding included). Raises :class:`_Declined` for batches the
    kernel leaves to the torch path."""

    @staticmethod
    def forward(ctx, features, n, wires, need_x):
        z, x, norms = _zx_kernel(features, n, wires)
        ctx.save_for_backward(features)
        ctx.norms, ctx.n, ctx.wires, ctx.need_x = norms, n, wires, need_x
        return z, (x if need_x else torch.zeros_like(z))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gz, gx):
        (features,) = ctx.saved_tensors
        # Unused outputs arrive as zeros (autograd materialises them); without ⟨X⟩ the
        # second output is a constant zero whose gradient must not reach the X terms.
        if not ctx.need_x:
            gx = torch.zeros_like(gz)
        return _zx_kernel_backward(ctx, features, gz, gx), None, None, None


def _select_wires(values: torch.Tensor, wires: tuple[int, ...]) -> torch.Tensor:
    """``[B, n]`` per-wire values → ``[B, m]`` for the measured wires."""
    return values if wires == tuple(range(values.shape[1])) else values[:, list(wires)]


def _to_all_wires(grad: torch.Tensor, wires: tuple[int, ...], n: int) -> torch.Tensor:
    """``[B, m]`` gradients of the measured wires → ``[B, n]`` (the inverse of
    :func:`_select_wires`; repeated wires add up)."""
    if wires == tuple(range(n)):
        return grad
    return grad.new_zeros(grad.shape[0], n).index_add_(1, torch.tensor(wires), grad)


def _zx_kernel(features, n, wires):
    """The kernel's ⟨Z⟩₀ and ⟨X⟩₀ of the measured wires (``[B, m]`` each) and the norms."""
    result = kernels.encoded_zx_forward(features, n)
    if result is None:
        raise _Declined
    z_all, x_all, norms = result
    return _select_wires(z_all, wires), _select_wires(x_all, wires), norms


def _zx_kernel_backward(ctx, features, gz, gx) -> torch.Tensor:
    """Feature gradient for upstream gradients of the measured wires' ⟨Z⟩₀, ⟨X⟩₀."""
    dtype = features.dtype
    gz_all = _to_all_wires(gz.to(dtype), ctx.wires, ctx.n)
    gx_all = _to_all_wires(gx.to(dtype), ctx.wires, ctx.n)
    return kernels.encoded_zx_backward(features, ctx.n, ctx.norms, gz_all, gx_all)


class _EncodedRY(torch.autograd.Function):
    """Ansatz 1 with RY: cos θ_k·⟨Z_k⟩₀ − sin θ_k·⟨X_k⟩₀ of ``amplitude_encode(features)``
    in one autograd node (the kernel plus the formula; small ops cost more than the
    arithmetic here). θ is ``[m]``, the summed angle of each measured wire."""

    @staticmethod
    def forward(ctx, features, theta, n, wires):
        z, x, norms = _zx_kernel(features, n, wires)
        cos, sin = torch.cos(theta), torch.sin(theta)
        ctx.save_for_backward(features, z, x, cos, sin)
        ctx.norms, ctx.n, ctx.wires = norms, n, wires
        return z * cos - x * sin

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gout):
        features, z, x, cos, sin = ctx.saved_tensors
        grad_theta = -(gout * (z * sin + x * cos)).sum(0)
        grad = _zx_kernel_backward(ctx, features, gout * cos, gout * -sin)
        return grad, grad_theta, None, None


class _EncodedLayer(torch.autograd.Function):
    """Z-parities after one layer of real one-qubit gates on ``amplitude_encode(features)``
    by the CPU kernel (see :class:`_EncodedZX`)."""

    @staticmethod
    def forward(ctx, features, mats, n, signs_t):
        result = kernels.encoded_layer_forward(features, n, mats, signs_t)
        if result is None:
            raise _Declined
        out, work, norms = result
        ctx.save_for_backward(mats)
        ctx.work, ctx.norms, ctx.signs_t = work, norms, signs_t
        ctx.n_features = features.shape[1]
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gout):
        (mats,) = ctx.saved_tensors
        grad, grad_mats = kernels.encoded_layer_backward(
            ctx.work, ctx.n_features, ctx.norms, mats, ctx.signs_t, gout
        )
        return grad, grad_mats.to(mats.dtype), None, None


def _layer_matrices(plan: _Plan, local: _Local, weights: torch.Tensor, dtype) -> torch.Tensor:
    """``[n, 2, 2]`` fused matrices of a one-qubit layer, identity on wires without gates."""
    return _per_wire(_fused_matrices(local, weights, dtype), local.wires, range(plan.n))


def _kernel_sign_table(plan: _Plan, dtype) -> np.ndarray:
    key = ("signs_t", dtype)
    if key not in plan._cache:
        plan._cache[key] = plan.signs(dtype, torch.device("cpu")).T.contiguous().numpy()
    return plan._cache[key]


def _single_real_layer(plan: _Plan) -> _Local | None:
    body = plan.body
    if plan.product is None and len(body) == 1 and isinstance(body[0], _Local) and body[0].real:
        return body[0]
    return None


def run_encoded_circuit(
    features: torch.Tensor,
    n_qubits: int,
    ops: Sequence[Op],
    weights: torch.Tensor,
    wires: Sequence[int],
    *,
    shots: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``run_circuit(amplitude_encode(features, n_qubits), ops, ...)``, fused where possible.

    On CPU with the compiled kernels (:mod:`qhead.simulator.kernels`), exact
    expectations of circuits that are a product of one-qubit gates (Ansatz 1) or one
    layer of real one-qubit gates followed by CNOTs (Ansatz 2 with D = 1) are computed
    straight from the features: the padded, normalised states are never stored, and
    the backward includes the encoding's. The values and gradients are those of the
    unfused composition (tested), all-zero rows included; everything else, and batches
    with a row the kernels decline (non-finite values, norms out of range), take that
    composition.

    Args:
        features: ``[B, N]`` real features (already flattened), N ≤ 2^n_qubits.
        n_qubits: register size n.
        ops, weights, wires, shots, generator: as for :func:`run_circuit`.

    Returns:
        ``[B, m]``.
    """
    wires = tuple(int(w) for w in wires)
    ops = tuple(ops)
    fused = None
    if shots is None and features.dim() == 2 and kernels.usable_features(features, n_qubits):
        plan = _compile(ops, n_qubits, wires, tuple(weights.shape))
        fused = _run_fused(plan, features, n_qubits, weights, wires)
        if fused is not None and plan.uses_no_params and weights.requires_grad:
            fused = fused + 0 * weights.sum().to(fused.dtype)
    if fused is not None:
        return fused
    state = amplitude_encode(features, n_qubits)
    return run_circuit(state, ops, weights, wires, shots=shots, generator=generator)


def _run_fused(plan: _Plan, features, n, weights, wires) -> torch.Tensor | None:
    dtype = features.dtype
    try:
        if plan.product is not None:
            angle_map = _ry_angle_map(plan, wires, dtype, features.device)
            if angle_map is not None:
                # Ansatz 1 proper: one node for the kernel and the formula (the general
                # formula below takes about twenty small ops, forward and backward).
                theta = angle_map @ weights.reshape(-1).to(dtype)
                return _EncodedRY.apply(features, theta, n, wires)
            z0, x0 = _EncodedZX.apply(features, n, wires, plan.product_needs_x)
            full = _product_matrices(plan, weights, dtype, wires)
            return _product_from_zx(z0, x0, full, plan.product_needs_x)
        layer = _single_real_layer(plan)
        if layer is not None:
            mats = _layer_matrices(plan, layer, weights, dtype)
            return _EncodedLayer.apply(features, mats, n, _kernel_sign_table(plan, dtype))
    except _Declined:
        pass
    return None
