"""The gate table: every gate qhead knows, defined once.

A circuit is a sequence of :class:`Op` (gate name, wires, index of its angle in a
weight tensor). Everything that handles circuits reads the facts about a gate from
its :class:`GateSpec` in :data:`GATES` — the simulator's plan compiler and kernels
(matrix, real / diagonal / permutation), the PennyLane backend and the ``qhead.qubit``
device (PennyLane class name), the linter (how the gate transforms a measured
observable), the drawing (labels) — so a new gate is one entry here plus, where a
backend has a specialised code path for it, that path.

Conventions (PennyLane's): wire 0 is the most significant bit of the basis index,
``R_P(θ) = exp(−iθP/2)``, ``CNOT(control, target)``, ``CZ(a, b)`` = diag(1, 1, 1, −1).
PennyLane's general rotation ``Rot(φ, θ, ω) = RZ(ω)·RY(θ)·RZ(φ)`` is written as those
three gates (``qhead.quantum`` ansätze and the device do so; the simulator fuses them
back into one 2×2 matrix).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["GATES", "GateSpec", "Op", "flat_index", "validate_ops"]

# Heisenberg-picture status of a measured observable on one wire, used by the linter:
# identity there, only I/Z (diagonal), or anything.
IDENTITY, DIAGONAL, ANY = 0, 1, 2


@dataclass(frozen=True)
class GateSpec:
    """Everything qhead needs to know about one gate.

    Attributes:
        name: the name used in :class:`Op` (``"RY"``, ``"CNOT"``, …).
        n_wires: 1 or 2.
        parametrized: takes one angle.
        real: real matrix (keeps a real state real).
        diagonal: diagonal in the computational basis (commutes with Z measurements).
        permutation: permutes basis states without phases (X, CNOT).
        axis: rotation axis of RX/RY/RZ (rotations about one axis merge), else None.
        pennylane: the PennyLane operation class (``qml.<pennylane>``).
        symbols: drawing label per wire (one-qubit gates: the name; CNOT: ●, ⊕).
        unitary: θ (float or None) → the gate's matrix as complex128 numpy,
            2×2 or 4×4 (first wire = most significant bit).
        lint: for two-qubit gates, how a measured observable's per-wire status
            (``IDENTITY``, ``DIAGONAL``, ``ANY``) on (wire 0, wire 1)
            after the gate maps to the status before it (sound over-approximation).
            One-qubit gates need no rule: a diagonal gate keeps a diagonal
            observable diagonal, X keeps it diagonal (X Z X = −Z), others make it ANY.
    """

    name: str
    n_wires: int
    parametrized: bool
    real: bool
    diagonal: bool
    permutation: bool
    pennylane: str
    unitary: Callable[[float | None], np.ndarray]
    axis: str | None = None
    symbols: tuple[str, ...] = ()
    lint: Callable[[int, int], tuple[int, int]] | None = None

    def label(self, wire_index: int = 0) -> str:
        """Drawing label on the gate's ``wire_index``-th wire."""
        return self.symbols[wire_index] if self.symbols else self.name


def _rx(t):
    c, s = math.cos(t / 2), math.sin(t / 2)
    return np.array([[c, -1j * s], [-1j * s, c]])


def _ry(t):
    c, s = math.cos(t / 2), math.sin(t / 2)
    return np.array([[c, -s], [s, c]], dtype=complex)


def _rz(t):
    return np.diag([np.exp(-0.5j * t), np.exp(0.5j * t)])


def _cnot_lint(c: int, t: int) -> tuple[int, int]:
    # CNOT(c, t) maps Z_t → Z_c Z_t and X_c → X_c X_t (Heisenberg picture).
    if c == ANY:
        new_c = ANY
    elif c == DIAGONAL or t != IDENTITY:
        new_c = DIAGONAL
    else:
        new_c = IDENTITY
    return new_c, (ANY if ANY in (c, t) else t)


def _cz_lint(a: int, b: int) -> tuple[int, int]:
    # CZ is diagonal and symmetric: it commutes with Z on either wire and maps
    # X_a → X_a Z_b, so a non-diagonal part on one wire adds a diagonal one on the other.
    return (max(a, DIAGONAL) if b == ANY else a), (max(b, DIAGONAL) if a == ANY else b)


_SQ = 1 / math.sqrt(2)

GATES: dict[str, GateSpec] = {
    "H": GateSpec(
        "H", 1, False, True, False, False, "Hadamard",
        lambda _: np.array([[_SQ, _SQ], [_SQ, -_SQ]], dtype=complex),
    ),
    "X": GateSpec("X", 1, False, True, False, True, "PauliX",
                  lambda _: np.array([[0, 1], [1, 0]], dtype=complex)),
    "Z": GateSpec("Z", 1, False, True, True, False, "PauliZ",
                  lambda _: np.diag([1.0, -1.0]).astype(complex)),
    "RX": GateSpec("RX", 1, True, False, False, False, "RX", _rx, axis="X"),
    "RY": GateSpec("RY", 1, True, True, False, False, "RY", _ry, axis="Y"),
    "RZ": GateSpec("RZ", 1, True, False, True, False, "RZ", _rz, axis="Z"),
    "CNOT": GateSpec(
        "CNOT", 2, False, True, False, True, "CNOT",
        lambda _: np.eye(4, dtype=complex)[[0, 1, 3, 2]],
        symbols=("●", "⊕"), lint=_cnot_lint,
    ),
    "CZ": GateSpec(
        "CZ", 2, False, True, True, False, "CZ",
        lambda _: np.diag([1.0, 1.0, 1.0, -1.0]).astype(complex),
        symbols=("●", "●"), lint=_cz_lint,
    ),
}


@dataclass(frozen=True)
class Op:
    """One gate of a circuit.

    Attributes:
        name: a key of :data:`GATES` (H, X, Z, RX, RY, RZ, CNOT, CZ).
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


def flat_index(param: tuple[int, ...], shape: tuple[int, ...]) -> int:
    """Position of ``weights[param]`` in ``weights.reshape(-1)``."""
    flat = 0
    for i, s in zip(param, shape, strict=True):
        flat = flat * s + i
    return flat
