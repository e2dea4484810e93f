"""Pauli-Z expectations of batched states: exact, and estimated from finite shots.

⟨Z_k⟩ = P(bit k = 0) − P(bit k = 1), wire 0 = most significant bit (PennyLane).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

__all__ = ["expval_z", "probabilities", "sample_expval_z", "z_signs"]

# Samples drawn per chunk in shot mode, so that huge shot counts do not allocate a
# [B, shots] index tensor at once.
_SHOT_CHUNK = 1 << 16


def probabilities(state: torch.Tensor) -> torch.Tensor:
    """|ψ|² flattened: ``[B] + [2] * n`` → ``[B, 2^n]`` (real dtype)."""
    flat = state.reshape(state.shape[0], -1)
    if flat.is_complex():
        return flat.real.square() + flat.imag.square()
    return flat.square()


# (n, wires, dtype, device) → table, for tables without a folded permutation.
_TABLES: dict = {}


@functools.lru_cache(maxsize=64)
def _z_signs_cpu(n: int, wires: tuple[int, ...]) -> torch.Tensor:
    index = torch.arange(2**n)
    bits = torch.stack([(index >> (n - 1 - w)) & 1 for w in wires], dim=1)
    return (1 - 2 * bits).to(torch.int8)  # ±1 exactly; int8 keeps the cache small


def _check_wires(wires: Sequence[int], n: int) -> tuple[int, ...]:
    wires = tuple(int(w) for w in wires)
    if not wires:
        raise ValueError("wires must name at least one wire")
    bad = [w for w in wires if not 0 <= w < n]
    if bad:
        raise ValueError(f"wires {bad} out of range for {n} qubits (allowed 0..{n - 1})")
    return wires


def z_signs(
    n: int,
    wires: Sequence[int],
    dtype: torch.dtype = torch.float32,
    device=None,
    permutation: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eigenvalue table of Z on ``wires``: ``[2^n, m]`` with entry ``1 − 2·bit_k(j)``.

    Args:
        n: number of qubits.
        wires: measured wires (m of them).
        dtype, device: of the result.
        permutation: optional gather index ``p`` applied to the state before measuring
            (``ψ'[j] = ψ[p[j]]``, see :func:`qhead.simulator.cnot_permutation`); it is
            folded into the table so that ``|ψ|² @ table`` measures ψ' without moving ψ.
    """
    wires = _check_wires(wires, n)
    if permutation is None:
        key = (n, wires, dtype, str(device))
        cached = _TABLES.get(key)
        if cached is None:
            if len(_TABLES) > 64:
                _TABLES.clear()
            cached = _TABLES[key] = _z_signs_cpu(n, wires).to(device=device, dtype=dtype)
        return cached
    signs = _z_signs_cpu(n, wires)
    if permutation is not None:
        folded = torch.empty_like(signs)
        folded[permutation.cpu()] = signs
        signs = folded
    return signs.to(device=device, dtype=dtype)


def expval_z(state: torch.Tensor, wires: Sequence[int]) -> torch.Tensor:
    """Exact ⟨Z_k⟩ for each wire k in ``wires``.

    Args:
        state: ``[B] + [2] * n``, real or complex, normalised.
        wires: the m measured wires, in output order.

    Returns:
        ``[B, m]`` in the real dtype of ``state``.
    """
    n = state.dim() - 1
    probs = probabilities(state)
    return probs @ z_signs(n, wires, probs.dtype, probs.device)


def _sample_z(
    probs: torch.Tensor, signs: torch.Tensor, shots: int, generator: torch.Generator | None
) -> torch.Tensor:
    counts = torch.zeros_like(probs)
    left = shots
    while left > 0:
        take = min(left, _SHOT_CHUNK)
        # multinomial only needs non-negative weights, so float32 rounding of ‖ψ‖² is harmless.
        idx = torch.multinomial(probs, take, replacement=True, generator=generator)  # [B, take]
        counts.scatter_add_(1, idx, torch.ones_like(idx, dtype=counts.dtype))
        left -= take
    return (counts @ signs) / shots


def sample_expval_z(
    state: torch.Tensor,
    wires: Sequence[int],
    shots: int,
    generator: torch.Generator | None = None,
    *,
    signs: torch.Tensor | None = None,
) -> torch.Tensor:
    """⟨Z_k⟩ estimated from ``shots`` measurements of every wire of every example.

    For each example, ``shots`` basis states are drawn from |ψ|² (jointly over all
    wires, as a device would measure them, so estimates of different wires are
    correlated exactly as on hardware) and ⟨Z_k⟩ is the mean of ``1 − 2·bit_k``.

    Gradient (straight-through): the forward value is the shot estimate, the backward
    pass is the gradient of the exact expectation, i.e. the result is
    ``exact + (estimate − exact).detach()``. The estimate is unbiased, so this is the
    gradient of the expected output; it lets a model be trained under shot noise.

    Args:
        state: ``[B] + [2] * n``.
        wires: the m measured wires.
        shots: samples per example (≥ 1).
        generator: optional ``torch.Generator`` (on the state's device) for reproducible draws.
        signs: optional precomputed table from :func:`z_signs` (e.g. with a folded permutation).

    Returns:
        ``[B, m]`` estimates, multiples of 2/shots in [−1, 1].
    """
    if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
        raise ValueError(f"shots must be a positive integer, got {shots!r}")
    n = state.dim() - 1
    probs = probabilities(state)
    if signs is None:
        signs = z_signs(n, wires, probs.dtype, probs.device)
    exact = probs @ signs
    estimate = _sample_z(probs.detach(), signs, shots, generator)
    return exact + (estimate - exact).detach()
