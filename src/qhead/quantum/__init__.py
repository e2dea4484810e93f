"""The quantum head: ansatz registry, circuit lint and drawing, the AEVQC module.

* :data:`ANSATZES` — registry of ansätze (``ansatz1``, ``ansatz2``; add your own).
* :class:`AEVQC` — ``nn.Module`` [B, N] → [B, m] ⟨Z⟩ expectations, torch or PennyLane backend.
* :func:`lint_circuit` — dead parameters and redundant rotations, with explanations.
* :func:`draw_circuit` — text drawing.
"""

from qhead.quantum.ansatz import ANSATZES, Ansatz, EntanglingLayers, RotationLayers, build_ansatz
from qhead.quantum.draw import draw_circuit, draw_ops
from qhead.quantum.lint import CircuitLintWarning, LintWarning, lint_circuit, lint_ops
from qhead.quantum.module import AEVQC, resolve_measured_wires

__all__ = [
    "AEVQC",
    "ANSATZES",
    "Ansatz",
    "CircuitLintWarning",
    "EntanglingLayers",
    "LintWarning",
    "RotationLayers",
    "build_ansatz",
    "draw_circuit",
    "draw_ops",
    "lint_circuit",
    "lint_ops",
    "resolve_measured_wires",
]
