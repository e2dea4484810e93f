"""Circuits of RX, X and CNOT in the Hadamard frame: two Walsh–Hadamard transforms.

Conjugating by H on every wire (H⊗ⁿ, written H) maps RX(θ) to RZ(θ), X to Z = i·RZ(π)
and CNOT(c, t) to CNOT(t, c), exactly (up to a global phase for X). So a circuit U made
of these gates (PennyLane's ``BasicEntanglerLayers`` with its default RX, for one) is

    U = H · M · H,   M = H U H a *monomial* matrix: (Mψ)_j = e^{iΦ_j} ψ_σ(j),

where σ is a linear permutation of the basis (the reversed CNOTs composed: σ(j) = A·j
over the index bits) and Φ a phase table, Φ_j = −½ Σ_p a_p (−1)^{popcount(j & m_p)}:
every rotation angle a_p (RX's θ, or π for an X) pulled through the CNOTs after it
becomes a Z-parity with a bit mask m_p. Hence Φ = −½·WHT(v) with v[m] = Σ_{p: m_p = m}
a_p (one transform of 2^n values per call, shared by the batch), and ∂L/∂a_p =
−½·WHT(∂L/∂Φ)[m_p]. The permutation commutes through the first transform as its
transposed inverse, M·H = diag(e^{iΦ})·H·Q with Q moving amplitude i to row τ(i) = Aᵀ·i,
so the kernel applies Q where rows are scattered anyway, in the encoding:
U·ψ₀ = H·diag(e^{iΦ})·H·Qψ₀.

Per example the kernel then does, whatever the depth D: the encoding, one real
Walsh–Hadamard transform (15 butterfly levels at n = 15, in radix-4 passes), the phase,
one complex transform and the ⟨Z⟩ folds; the backward one complex and one real
transform, a pass that also gives ∂L/∂Φ (summed over the batch) and the encoding's
projection. Every pass but the encoding and its backward reads and writes rows in order
(a gather through σ between the transforms cost 1.4× more backward at D = 5, whose σ
scatters rows over the whole state, than at D = 1). A gate-by-gate simulator instead
applies D·n one-qubit matrices and D permutations forward and undoes them backward
(``benchmarks/kernel_profile.py``).

The states are in the lane layout of :mod:`qhead.simulator.kernels` (``state[j·L + l]``
is amplitude j of example l of a group of L ≤ :data:`kernels.LANES`), whose encoding,
⟨Z⟩ folds, ±g sums, buffer pool and thread split this module reuses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from qhead.simulator import kernels
from qhead.simulator.ops import Op, flat_index

__all__ = ["HadamardFrame", "hadamard_frame", "walsh_backward", "walsh_forward"]

#: The gates a Hadamard-frame circuit may contain.
FRAME_GATES = frozenset({"RX", "X", "CNOT"})


@dataclass(frozen=True, eq=False)
class HadamardFrame:
    """A circuit of :data:`FRAME_GATES` as H · monomial · H (see the module docstring).

    Attributes:
        n: number of qubits.
        tau: ``[2^n]`` int64, where the encoding puts amplitude i: row tau[i] (Q above).
        param_masks: ``[P]`` int64, the Z-parity mask of each parametrised rotation.
        param_index: ``[P]`` int64, its angle's position in ``weights.reshape(-1)``.
        const_masks, const_angles: the same for fixed rotations (an X is RX(π)).
    """

    n: int
    tau: np.ndarray
    param_masks: np.ndarray
    param_index: torch.Tensor
    const_masks: np.ndarray
    const_angles: np.ndarray


def hadamard_frame(ops: tuple[Op, ...], n: int, shape: tuple[int, ...]) -> HadamardFrame | None:
    """The circuit ``ops`` (weights of ``shape``) in the Hadamard frame, or None when it
    has a gate outside :data:`FRAME_GATES` or no gate at all."""
    if not ops or any(op.name not in FRAME_GATES for op in ops):
        return None
    # images[i] = G(e_i) for the linear map G = g_{t+1}∘…∘g_k of the CNOTs after the
    # current point (built from the last gate backwards); bit (n − 1 − w) is wire w.
    images = [1 << i for i in range(n)]
    terms: list[tuple[int, tuple[int, ...] | None]] = []  # (mask, param) in reverse order
    for op in reversed(ops):
        if op.name == "CNOT":
            # In the frame, CNOT(c, t) is CNOT(t, c): x ↦ x ⊕ (bit_t(x)·e_c).
            control, target = 1 << (n - 1 - op.wires[1]), 1 << (n - 1 - op.wires[0])
            images = [x ^ target if x & control else x for x in images]
            continue
        bit = 1 << (n - 1 - op.wires[0])
        mask = sum(1 << i for i, x in enumerate(images) if x & bit)
        terms.append((mask, op.param if op.name == "RX" else None))
    # σ(j) = A·j with A·e_i = images[i]; the encoding scatters by τ = Aᵀ:
    # Aᵀ·e_b has bit a set where A·e_a has bit b.
    transposed = [sum(1 << a for a, x in enumerate(images) if x >> b & 1) for b in range(n)]
    basis = np.arange(2**n, dtype=np.int64)
    tau = np.zeros(2**n, dtype=np.int64)
    for b, image in enumerate(transposed):
        tau ^= ((basis >> b) & 1) * image
    params = [(mask, flat_index(p, shape)) for mask, p in terms if p is not None]
    consts = [mask for mask, p in terms if p is None]
    return HadamardFrame(
        n=n,
        tau=tau,
        param_masks=np.array([m for m, _ in params], dtype=np.int64),
        param_index=torch.tensor([i for _, i in params], dtype=torch.long),
        const_masks=np.array(consts, dtype=np.int64),
        const_angles=np.full(len(consts), np.pi),
    )


def _phase_table(frame: HadamardFrame, angles: np.ndarray, dtype, lease: kernels.Lease
                 ) -> tuple[np.ndarray, np.ndarray]:
    """cos Φ and sin Φ times 2^−n (the two unnormalised transforms' factor) in ``dtype``,
    for the rotation angles ``angles`` ``[P]`` (float64)."""
    dim = 2**frame.n
    v = np.zeros(dim)
    np.add.at(v, frame.param_masks, angles)
    np.add.at(v, frame.const_masks, frame.const_angles)
    _wht(v, frame.n)
    phi = v * -0.5
    if np.dtype(dtype) == np.float32:
        # Reduced to [−π, π] in float64, then float32 cos/sin: numpy's vectorised float32
        # trigonometry (0.02 ms for 2^15 values) instead of float64's (0.3–0.5 ms); the
        # tables' error stays at float32 rounding.
        phi -= (2 * np.pi) * np.round(phi / (2 * np.pi))
        phi = phi.astype(np.float32)
    scale = phi.dtype.type(0.5**frame.n)
    cos, sin = lease.array((dim,), dtype), lease.array((dim,), dtype)
    np.multiply(np.cos(phi), scale, out=cos, casting="unsafe")
    np.multiply(np.sin(phi), scale, out=sin, casting="unsafe")
    return cos, sin


if kernels.numba is not None:
    from qhead.simulator.kernels import (
        _CHUNK,
        _group_size,
        _inline,
        _jit,
        _row_norm,
        _z_measure_lanes,
        _z_weights_lanes,
    )

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
        dim = a.shape[0]
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
    def _scatter_block(feats, state, lanes, scale, tau, stop):
        """state[τ(j)·L + l] = feats[l, j]·scale[l] for j < stop (a multiple of 16), in
        blocks of 16 amplitudes: a block's 16 destination rows stay in L1 while every
        lane writes into them (``lanes`` a literal: the loops unroll)."""
        for j0 in range(0, stop, 16):
            for lane in range(lanes):
                row = feats[lane]
                c = scale[lane]
                for j in range(j0, j0 + 16):
                    state[tau[j] * lanes + lane] = row[j] * c

    @_inline
    def _encode_scattered(feats, state, lanes, scale, tau):
        """The amplitude encoding of a group into the lane layout with amplitude j in
        row τ(j) (scale = 1/‖x‖ per lane), zeros elsewhere."""
        n_feat = feats.shape[1]
        for i in range(state.shape[0]):
            state[i] = 0
        whole = n_feat - n_feat % 16
        if lanes == 16:
            _scatter_block(feats, state, 16, scale, tau, whole)
        elif lanes == 8:
            _scatter_block(feats, state, 8, scale, tau, whole)
        else:
            whole = 0
        for j in range(whole, n_feat):
            at = tau[j] * lanes
            for lane in range(lanes):
                state[at + lane] = feats[lane, j] * scale[lane]

    @_inline
    def _gather_block(grad, feats, lam, lanes, shift, scale, tau, stop):
        """grad[l, j] = (λ[τ(j)·L + l] − shift[l]·feats[l, j])·scale[l] for j < stop (a
        multiple of 16), in blocks of 16 amplitudes."""
        for j0 in range(0, stop, 16):
            for lane in range(lanes):
                out = grad[lane]
                row = feats[lane]
                t = shift[lane]
                c = scale[lane]
                for j in range(j0, j0 + 16):
                    out[j] = (lam[tau[j] * lanes + lane] - t * row[j]) * c

    @_inline
    def _project_out_scattered(grad, feats, lam, norms, lanes, shift, scale, tau):
        """The encoding's backward (λ₀ − ψ₀(ψ₀·λ₀))/‖x‖ for a group whose λ₀ is in the
        lane layout with amplitude j in row τ(j); shift[l] holds ψ₀·λ₀ on entry (it is
        overwritten; scale is scratch). Zero for all-zero rows."""
        n_feat = feats.shape[1]
        for lane in range(lanes):
            norm = norms[lane]
            scale[lane] = 1.0 / norm if norm > 0 else 0.0
            shift[lane] = shift[lane] * scale[lane]  # (ψ·λ)/‖x‖: ψ_j = x_j/‖x‖
        whole = n_feat - n_feat % 16
        if lanes == 16:
            _gather_block(grad, feats, lam, 16, shift, scale, tau, whole)
        elif lanes == 8:
            _gather_block(grad, feats, lam, 8, shift, scale, tau, whole)
        else:
            whole = 0
        for lane in range(lanes):
            out, row = grad[lane], feats[lane]
            t, c = shift[lane], scale[lane]
            for j in range(whole, n_feat):
                out[j] = (lam[tau[j] * lanes + lane] - t * row[j]) * c
            if norms[lane] <= 0:
                for j in range(n_feat):
                    out[j] = 0

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
                p0, p1, p2, p3 = a0 + a1, a0 - a1, a2 + a3, a2 - a3
                r[i] = p0 + p2
                r[lanes + i] = p1 + p3
                r[2 * lanes + i] = p0 - p2
                r[3 * lanes + i] = p1 - p3
                b0, b1, b2, b3 = x0 * s0, x1 * s1, x2 * s2, x3 * s3
                q0, q1, q2, q3 = b0 + b1, b0 - b1, b2 + b3, b2 - b3
                m[i] = q0 + q2
                m[lanes + i] = q1 + q3
                m[2 * lanes + i] = q0 - q2
                m[3 * lanes + i] = q1 - q3

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
    def _lambda_lanes(g, n, re, im, lr, li, lanes, top, low, coef):
        """λ = (Σ_k g_k Z_k)χ for every lane of a group: d_j = Σ_k ±g_k as the sum of a
        table over the upper bits of j and one over the lower bits (both in L1), so
        that the 2^n·L values of d are never stored. top and low hold 2^⌈n/2⌉·L and
        2^⌊n/2⌋·L values."""
        low_bits = n // 2
        high_bits = n - low_bits
        _z_weights_lanes(g[:, :high_bits], high_bits, top, lanes, coef)
        _z_weights_lanes(g[:, high_bits:], low_bits, low, lanes, coef)
        count = 1 << low_bits
        for hi in range(1 << high_bits):
            t = top[hi * lanes : (hi + 1) * lanes]
            for lo in range(count):
                u = low[lo * lanes : (lo + 1) * lanes]
                at = (hi * count + lo) * lanes
                a, b = re[at : at + lanes], im[at : at + lanes]
                x, y = lr[at : at + lanes], li[at : at + lanes]
                for i in range(lanes):
                    d = t[i] + u[i]
                    x[i] = d * a[i]
                    y[i] = d * b[i]

    @_jit
    def _wht(v, n):
        _wht_lanes(v, n, 1)

    @_jit
    def _walsh_rows(feats, n, tau, cos, sin, out, norms, keep_w, keep_r, keep_i, cap, p, q):
        """The forward of a chunk of rows, in groups of up to ``cap`` (lane layout):
        keep_w gets WHT(Qψ₀) (real), keep_r/keep_i the final state, for the backward."""
        dim = 1 << n
        batch = feats.shape[0]
        acc = np.empty(cap, p.dtype)
        scale = np.empty(cap, p.dtype)
        start = 0
        while start < batch:
            lanes = _group_size(batch - start, cap)
            size = dim * lanes
            stop = start + lanes
            w = keep_w[start:stop].reshape((size,))
            re = keep_r[start:stop].reshape((size,))
            im = keep_i[start:stop].reshape((size,))
            for b in range(start, stop):
                norm = _row_norm(feats[b])
                norms[b] = norm
                if norm < 0:
                    return
                scale[b - start] = 1.0 / norm if norm > 0 else 0.0
            _encode_scattered(feats[start:stop], w, lanes, scale, tau)
            for b in range(start, stop):
                if norms[b] == 0:
                    w[b - start] = 1  # an all-zero row is |0…0⟩ (τ(0) = 0)
            _wht_lanes(w, n, lanes)
            _phase_lanes(w, re, im, cos, sin, lanes, n)
            _wht_lanes_from(re, n, lanes, 2)
            _wht_lanes_from(im, n, lanes, 2)
            _z_measure_lanes(re, im, True, p[:size], q[:size], n, lanes, acc,
                             out[start:stop])
            start = stop

    @_jit
    def _walsh_grad_rows(feats, keep_w, keep_r, keep_i, n, tau, cos, sin, gout, norms,
                         grad, phase_grad, cap, lr, li, rho):
        """The backward of a chunk (groups as :func:`_walsh_rows` made them): the
        features' gradient into grad, Σ over the chunk of ∂L/∂Φ_j into phase_grad."""
        dim = 1 << n
        batch = feats.shape[0]
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
            re = keep_r[start:stop].reshape((size,))
            im = keep_i[start:stop].reshape((size,))
            mr, mi, r = lr[:size], li[:size], rho[:size]
            # λ = 2·(Σ_k g_k Z_k)χ on the final state χ (gout holds 2·g), then μ = WHT(λ)
            _lambda_lanes(gout[start:stop], n, re, im, mr, mi, lanes, top, low, coef)
            _wht_lanes(mr, n, lanes)
            _wht_lanes(mi, n, lanes)
            _unphase_lanes(w, mr, mi, r, cos, sin, lanes, phase_grad, dots)
            _wht_lanes(r, n, lanes)  # Qλ₀ = H·ρ
            _project_out_scattered(grad[start:stop], feats[start:stop], r,
                                   norms[start:stop], lanes, dots, scale, tau)
            start = stop


def walsh_forward(features: torch.Tensor, frame: HadamardFrame, angles: torch.Tensor
                  ) -> tuple[torch.Tensor, tuple] | None:
    """⟨Z_k⟩ of every wire k of H·M·H·amplitude_encode(features) (the circuit of
    ``frame``, its rotation angles ``angles`` ``[P]`` in ``frame.param_index`` order).

    Args:
        features: ``[B, N]`` float32/float64 CPU tensor, N ≤ 2^n.

    Returns:
        ``(z [B, n], saved)`` with ``saved`` what :func:`walsh_backward` needs (keep the
        whole tuple: it owns pooled memory), or None when some row needs the torch
        encoder (a non-finite value, a norm out of range).
    """
    n = frame.n
    batch = features.shape[0]
    feats = kernels._as_array(features)
    dim = 2**n
    lease = kernels.Lease()
    cos, sin = _phase_table(frame, angles.detach().to(torch.float64).numpy(), feats.dtype,
                            lease)
    keep = [lease.array((batch, dim), feats.dtype) for _ in range(3)]
    out = np.empty((batch, n), feats.dtype)
    norms = np.zeros(batch)
    cap = kernels.LANES
    threads = kernels._threads(batch)
    Rows, Scratch = kernels._Rows, kernels._Scratch
    kernels._run_split(
        _walsh_rows, batch, Rows(feats), n, frame.tau, cos, sin, Rows(out), Rows(norms),
        *(Rows(k) for k in keep), cap,
        *(Scratch(dim * min(cap, batch), feats.dtype) for _ in range(2)),
        threads=threads,
    )
    if not (norms >= 0).all():
        return None
    return torch.from_numpy(out), (keep, norms, lease, cos, sin, (threads, cap))


def walsh_backward(saved: tuple, features: torch.Tensor, frame: HadamardFrame,
                   gz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of ``Σ gz·z`` (:func:`walsh_forward`, ``saved`` its second output,
    ``features`` the tensor it encoded, ``gz`` ``[B, n]``) with respect to the features
    (zero for all-zero rows) and to the angles ``[P]`` (float64)."""
    keep, norms, _, cos, sin, (threads, cap) = saved
    n = frame.n
    dim = 2**n
    batch = keep[0].shape[0]
    dtype = keep[0].dtype
    feats = kernels._as_array(features, keep[0])
    grad = np.empty_like(feats)
    phase_grad = np.zeros((threads, dim))
    kernels._run_split(
        _walsh_grad_rows, batch, kernels._Rows(feats), *(kernels._Rows(k) for k in keep),
        n, frame.tau, cos, sin, kernels._Rows(kernels._as_array(2 * gz, keep[0])),
        kernels._Rows(norms), kernels._Rows(grad), kernels._PerChunk(phase_grad), cap,
        *(kernels._Scratch(dim * min(cap, batch), dtype) for _ in range(3)),
        threads=threads,
    )
    total = phase_grad.sum(axis=0)
    _wht(total, n)
    angle_grad = -0.5 * total[frame.param_masks]
    return torch.from_numpy(grad), torch.from_numpy(angle_grad)
