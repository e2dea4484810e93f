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
(a gather through σ between the transforms cost 1.3× more backward at D = 5, whose σ
scatters rows over the whole state, than at D = 1). A gate-by-gate simulator instead
applies D·n one-qubit matrices and D permutations forward and undoes them backward
(``benchmarks/kernel_profile.py``).

This module compiles a circuit into that form (:func:`hadamard_frame`) and builds the
phase table per call; the kernel itself is :func:`qhead.simulator.kernels.walsh_forward`
/ ``walsh_backward`` (numba), in the lane layout of the general kernel
(``state[j·L + l]`` is amplitude j of example l of a group of L ≤ ``kernels.LANES``),
whose ⟨Z⟩ folds, ±g sums, buffer pool and thread split it shares.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from qhead.simulator import kernels
from qhead.simulator.ops import Op, flat_index

__all__ = ["HadamardFrame", "backward", "forward", "hadamard_frame", "phase_table"]

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
        const_masks: the Z-parity masks of the fixed rotations (an X is RX(π)).
    """

    n: int
    tau: np.ndarray
    param_masks: np.ndarray
    param_index: torch.Tensor
    const_masks: np.ndarray


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
    )


def phase_table(frame: HadamardFrame, angles: np.ndarray, dtype, lease: kernels.Lease
                ) -> tuple[np.ndarray, np.ndarray]:
    """cos Φ and sin Φ times 2^−n (the two unnormalised transforms' factor) in ``dtype``,
    for the rotation angles ``angles`` ``[P]`` (float64)."""
    dim = 2**frame.n
    v = np.zeros(dim)
    np.add.at(v, frame.param_masks, angles)
    np.add.at(v, frame.const_masks, np.pi)
    kernels.walsh_hadamard(v)
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


def forward(features: torch.Tensor, frame: HadamardFrame, angles: torch.Tensor
            ) -> tuple[torch.Tensor, tuple] | None:
    """⟨Z_k⟩ of every wire k of the circuit of ``frame`` on amplitude_encode(features),
    its rotation angles ``angles`` ``[P]`` in ``frame.param_index`` order.

    Returns:
        ``(z [B, n], saved)`` (keep ``saved`` whole for :func:`backward`: it owns pooled
        memory), or None when the kernel declines the batch (a row needs the torch
        encoder).
    """
    lease = kernels.Lease()
    dtype = np.float32 if features.dtype == torch.float32 else np.float64
    cos, sin = phase_table(frame, angles.detach().to(torch.float64).numpy(), dtype, lease)
    return kernels.walsh_forward(features, frame.n, frame.tau, cos, sin, lease)


def backward(saved: tuple, features: torch.Tensor, frame: HadamardFrame, gz: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of ``Σ gz·z`` (:func:`forward`; ``gz`` ``[B, n]``) with respect to the
    features and to the angles ``[P]`` (float64): ∂L/∂a_p = −½·WHT(∂L/∂Φ)[m_p]."""
    grad, phase_grad = kernels.walsh_backward(saved, features, gz)
    kernels.walsh_hadamard(phase_grad)
    return grad, torch.from_numpy(-0.5 * phase_grad[frame.param_masks])
