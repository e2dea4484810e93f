"""Amplitude encoding as a gate sequence: Möttönen's cascade of uniformly controlled RY.

On hardware an amplitude-encoded state has to be *prepared*: from |0…0⟩, for each wire
k = 0, 1, …, n−1 (wire 0 = most significant bit, the PennyLane convention), one RY on
wire k uniformly controlled by wires 0..k−1 splits every amplitude block of the prefix
into its two halves (Möttönen, Vartiainen, Bergholm & Salomaa, "Transformation of quantum
states using uniformly controlled rotations", QIC 5, 467 (2005), arXiv:quant-ph/0407010).
A uniformly controlled rotation with k controls is 2^k RY and 2^k CNOTs in Gray-code order
(their Fig. 2 / Möttönen & Vartiainen 2005 Fig. 7a), so the whole preparation is

* RY: Σ_{k<n} 2^k = 2^n − 1, CNOT: Σ_{1≤k<n} 2^k = 2^n − 2,
* depth 2^(n+1) − n − 2 (level k's 2^(k+1) gates on wire k follow one another; its first RY
  runs in parallel with the earlier levels).

This is exactly PennyLane's ``MottonenStatePreparation`` for a state with real non-negative
amplitudes (the tests compare the counts and the depth with ``qml.specs``). For **real
amplitudes of either sign** the same cascade suffices here: the last level's angles are
``2·atan2(ψ_{2j+1}, ψ_{2j})``, which carry the signs, so no phase cascade is needed.
PennyLane's decomposition treats a sign as a phase π and adds an RZ cascade (another
2^n − 2 CNOTs, up to 2^n − 1 RZ and a global phase): :func:`pennylane_mottonen_counts`.
Complex amplitudes (never produced by qhead's encoding) need that RZ cascade.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "Gate",
    "mottonen_counts",
    "mottonen_gates",
    "pennylane_mottonen_counts",
]


@dataclass(frozen=True)
class Gate:
    """One gate with a numeric angle: ``name`` in H, X, Z, RX, RY, RZ, CNOT."""

    name: str
    wires: tuple[int, ...]
    angle: float | None = None


def mottonen_counts(n_qubits: int) -> dict[str, int]:
    """Closed-form cost of :func:`mottonen_gates` for a dense real state on n qubits.

    Returns:
        ``{"RY": 2^n − 1, "CNOT": 2^n − 2, "depth": 2^(n+1) − n − 2}``. Angles that are
        exactly zero (zero blocks of a sparse state) could be skipped; the CNOTs cannot.
    """
    n = _check_n(n_qubits)
    return {"RY": 2**n - 1, "CNOT": 2**n - 2, "depth": 2 ** (n + 1) - n - 2}


def pennylane_mottonen_counts(n_qubits: int) -> dict[str, int]:
    """Upper bounds of PennyLane's ``MottonenStatePreparation`` for a state with negative
    (or complex) amplitudes: the RY cascade plus an RZ cascade for the phases.

    Returns:
        ``{"RY": 2^n − 1, "RZ": 2^n − 1, "CNOT": 2^(n+1) − 4}`` (RZ angles that happen to
        be zero are skipped by PennyLane, so its RZ count can be lower; the CNOTs are all
        applied, as the tests check with ``qml.specs``).
    """
    n = _check_n(n_qubits)
    return {"RY": 2**n - 1, "RZ": 2**n - 1, "CNOT": 2 ** (n + 1) - 4}


def _check_n(n_qubits: int) -> int:
    if isinstance(n_qubits, bool) or not isinstance(n_qubits, int) or n_qubits < 1:
        raise ValueError(f"n_qubits must be a positive integer, got {n_qubits!r}")
    return n_qubits


def _gray(k: int) -> np.ndarray:
    i = np.arange(k, dtype=np.int64)
    return i ^ (i >> 1)


def _walsh_hadamard(values: np.ndarray) -> np.ndarray:
    """Unnormalised fast Walsh–Hadamard transform: out[g] = Σ_j (−1)^popcount(j & g) v[j]."""
    out = values.astype(np.float64).copy()
    h = 1
    while h < len(out):
        view = out.reshape(-1, 2, h)
        a, b = view[:, 0, :].copy(), view[:, 1, :].copy()
        view[:, 0, :], view[:, 1, :] = a + b, a - b
        h *= 2
    return out


def _uniformly_controlled_ry(alpha: np.ndarray, target: int) -> list[Gate]:
    """RY(α_j) on ``target`` when wires 0..target−1 hold the prefix j (wire 0 = MSB).

    Gray-code decomposition: RY(θ_0) CNOT(c_0) RY(θ_1) CNOT(c_1) … with CNOT i controlled
    by the bit in which gray(i) and gray(i+1) (cyclically) differ. For prefix j the CNOTs
    before RY i flip its sign parity(j & gray(i)) times, so the angle j sees is
    Σ_i (−1)^popcount(j & gray(i)) θ_i; hence θ = WHT(α)[gray] / 2^k.
    """
    k = target
    if k == 0:
        return [Gate("RY", (target,), float(alpha[0]))]
    size = 2**k
    theta = _walsh_hadamard(alpha)[_gray(size)] / size
    gray = _gray(size)
    changed = gray ^ np.roll(gray, -1)
    gates: list[Gate] = []
    for i in range(size):
        bit = int(changed[i]).bit_length() - 1  # bit b of the prefix is wire k−1−b
        gates.append(Gate("RY", (target,), float(theta[i])))
        gates.append(Gate("CNOT", (k - 1 - bit, target)))
    return gates


def mottonen_gates(amplitudes: np.ndarray) -> list[Gate]:
    """Gates that take |0…0⟩ to the real, normalised state ``amplitudes``.

    Args:
        amplitudes: ``[2^n]`` real values (normalised to 1 here; any signs). Index
            convention: wire 0 is the most significant bit.

    Returns:
        the gate list, in time order: for wire k = 0..n−1 a uniformly controlled RY
        (2^k RY and, for k ≥ 1, 2^k CNOTs); counts as :func:`mottonen_counts`.

    Raises:
        ValueError: not a real finite vector of length 2^n (n ≥ 1), or all zeros.
    """
    psi = np.asarray(amplitudes)
    if np.iscomplexobj(psi):
        raise ValueError("mottonen_gates prepares real states only (qhead encodes real maps)")
    psi = psi.astype(np.float64).reshape(-1)
    n = int(np.log2(len(psi))) if len(psi) else 0
    if len(psi) < 2 or 2**n != len(psi):
        raise ValueError(f"amplitudes must have length 2^n with n ≥ 1, got {len(psi)}")
    if not np.all(np.isfinite(psi)):
        raise ValueError("amplitudes must be finite")
    norm = np.linalg.norm(psi)
    if norm == 0:
        raise ValueError("cannot prepare the zero vector (qhead encodes it as |0…0⟩)")
    psi = psi / norm
    gates: list[Gate] = []
    for k in range(n):
        # norms of the 2^(k+1) blocks one level down; at the last level the signed values
        blocks = psi.reshape(2 ** (k + 1), -1)
        child = blocks[:, 0] if k == n - 1 else np.linalg.norm(blocks, axis=1)
        left, right = child[0::2], child[1::2]
        alpha = 2.0 * np.arctan2(right, left)
        gates += _uniformly_controlled_ry(alpha, k)
    return gates
