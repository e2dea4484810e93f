"""The torch executor of a :class:`~qhead.simulator.plan.Plan` (CPU and CUDA).

Executes a compiled plan with batched torch ops, differentiable by autograd (with
hand-written backwards where autograd's would cost several passes):

* a :class:`~qhead.simulator.plan.Local` segment: groups of up to 5 adjacent wires are
  applied as one 2⁵×2⁵ Kronecker matrix product on the last wires of the layout
  (``[B·2^(n−5), 32] @ M^T``, no copy), the layout being rotated between groups;
* a :class:`~qhead.simulator.plan.Classical` segment (CNOT, CZ): one gather and one sign
  flip;
* product plans (one-qubit gates only): ⟨Z_k⟩ from ⟨Z_k⟩₀ and ⟨X_k⟩₀ of the state
  (:func:`z_and_x`: Gram matrices of wire groups on CPU, a Walsh–Hadamard transform on
  CUDA) and the fused 2×2 matrix of each measured wire;
* exact expectations ``|ψ|² @ table``, or finite shots.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

from qhead.simulator import kernels
from qhead.simulator.gates import hadamard_matrix
from qhead.simulator.measure import probabilities, sample_expval_z, z_signs
from qhead.simulator.plan import Classical, Local, Plan, fused_matrices, product_matrices

__all__ = [
    "ansatz1_closed_form",
    "product_expval_z",
    "run_plan",
    "select_wires",
    "to_all_wires",
    "z_and_x",
]


def select_wires(values: torch.Tensor, wires: tuple[int, ...]) -> torch.Tensor:
    """``[B, n]`` per-wire values → ``[B, m]`` for the measured wires."""
    return values if wires == tuple(range(values.shape[1])) else values[:, list(wires)]


def to_all_wires(grad: torch.Tensor, wires: tuple[int, ...], n: int) -> torch.Tensor:
    """``[B, m]`` gradients of the measured wires → ``[B, n]`` (the inverse of
    :func:`select_wires`; repeated wires add up)."""
    if wires == tuple(range(n)):
        return grad
    return grad.new_zeros(grad.shape[0], n).index_add_(1, torch.tensor(wires), grad)


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


def _apply_local(state: torch.Tensor, local: Local, weights: torch.Tensor) -> torch.Tensor:
    n = state.dim() - 1
    real_dtype = state.real.dtype if state.is_complex() else state.dtype
    mats = fused_matrices(local, weights, real_dtype)
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
    def forward(ctx, flat, signs, wires, need_x, allow_kernel):
        n = flat.shape[1].bit_length() - 1
        ctx.n, ctx.need_x, ctx.wires = n, need_x, wires
        ctx.kernel = allow_kernel and kernels.usable(flat)
        if ctx.kernel:
            z_all, x_all = kernels.zx_forward(flat)
            ctx.save_for_backward(flat, signs, None)
            z = select_wires(z_all, wires)
            return z, (select_wires(x_all, wires) if need_x else torch.zeros_like(z))
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
            gz_all = to_all_wires(gz.to(flat.dtype), ctx.wires, n)
            gx_all = to_all_wires(gx.to(flat.dtype), ctx.wires, n)
            return kernels.zx_backward(flat, gz_all, gx_all), None, None, None, None
        if ctx.plan is None:
            grad = 2 * flat * (gz @ signs.T)
            if phi is not None and gx is not None:
                grad += 2 * _hadamard_all(phi * (gx @ signs.T), n)
            return grad, None, None, None, None
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
        return grad, None, None, None, None


def z_and_x(
    state: torch.Tensor, wires: Sequence[int], need_x: bool = True, allow_kernel: bool = True
):
    """⟨Z_k⟩₀ and ⟨X_k⟩₀ of a real state for each wire k of ``wires``: two ``[B, m]``.

    ``allow_kernel=False`` keeps to torch ops (else real CPU states use
    :func:`qhead.simulator.kernels.zx_forward` where the kernels are enabled).
    """
    if state.is_complex():
        raise ValueError("z_and_x needs a real state (amplitude-encoded states are real)")
    n = state.dim() - 1
    flat = state.reshape(state.shape[0], -1)
    signs = z_signs(n, wires, flat.dtype, flat.device)
    return _ZX.apply(flat, signs, tuple(int(w) for w in wires), need_x, allow_kernel)


def product_expval_z(
    state: torch.Tensor,
    matrices: torch.Tensor,
    wires: Sequence[int],
    need_x: bool = True,
    allow_kernel: bool = True,
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
        allow_kernel: as for :func:`z_and_x`.

    Returns:
        ``[B, m]``.
    """
    z0, x0 = z_and_x(state, wires, need_x, allow_kernel)
    return product_from_zx(z0, x0, matrices, need_x)


def product_from_zx(
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


def run_plan(
    plan: Plan,
    state: torch.Tensor,
    weights: torch.Tensor,
    shots: int | None = None,
    generator: torch.Generator | None = None,
    allow_kernel: bool = False,
) -> torch.Tensor:
    """Executes ``plan`` on ``state`` (``[B] + [2] * n``) → ``[B, m]`` ⟨Z⟩ (or shot
    estimates) of ``plan.wires``. ``allow_kernel`` lets product plans read ⟨Z⟩₀, ⟨X⟩₀
    of real CPU states from the compiled kernel."""
    wires = plan.wires
    real_dtype = state.real.dtype if state.is_complex() else state.dtype
    if plan.product is not None and shots is None and not state.is_complex():
        full = product_matrices(plan, weights, real_dtype, wires)
        return product_expval_z(state, full, wires, plan.product_needs_x, allow_kernel)
    for segment in plan.body:
        if isinstance(segment, Classical):
            index, sign = plan.index(segment.ops, state.device)
            flat = state.reshape(state.shape[0], -1).index_select(1, index)
            if sign is not None:
                flat = flat * sign.to(flat.real.dtype if flat.is_complex() else flat.dtype)
            state = flat.reshape(state.shape)
        else:
            state = _apply_local(state, segment, weights)
    signs = plan.signs(real_dtype, state.device)
    if shots is None:
        return probabilities(state) @ signs
    return sample_expval_z(state, wires, shots, generator, signs=signs)
