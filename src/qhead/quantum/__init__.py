"""The quantum head: ansatz registry, circuit lint and drawing, the AEVQC module.

* :data:`ANSATZES` — registry of ansätze (``ansatz1``, ``ansatz2``; add your own).
* :class:`AEVQC` — ``nn.Module`` [B, N] → [B, m] ⟨Z⟩ expectations, torch or PennyLane backend.
* :class:`CircuitOptions` — its options, checked once (:mod:`qhead.quantum.options`).
* :func:`lint_circuit` — dead parameters and redundant rotations, with explanations.
* :func:`draw_circuit` — text drawing.
"""

from qhead.quantum.ansatz import ANSATZES, Ansatz, EntanglingLayers, RotationLayers, build_ansatz
from qhead.quantum.draw import draw_circuit, draw_ops
from qhead.quantum.lint import CircuitLintWarning, LintWarning, lint_circuit, lint_ops
from qhead.quantum.module import AEVQC
from qhead.quantum.options import (
    CircuitOptions,
    check_register,
    check_shots,
    resolve_measured_wires,
)

__all__ = [
    "AEVQC",
    "ANSATZES",
    "Ansatz",
    "CircuitLintWarning",
    "CircuitOptions",
    "EntanglingLayers",
    "LintWarning",
    "RotationLayers",
    "build_ansatz",
    "check_register",
    "check_shots",
    "draw_circuit",
    "draw_ops",
    "lint_circuit",
    "lint_ops",
    "resolve_measured_wires",
]
