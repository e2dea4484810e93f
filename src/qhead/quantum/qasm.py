"""OpenQASM 2.0 export of an AE-VQC circuit (``qhead export``).

OpenQASM 2.0 with ``qelib1.inc`` is what every toolchain reads (Qiskit
``QuantumCircuit.from_qasm_str``, PennyLane ``qml.from_qasm``, tket, Cirq's importer), and
qhead's gates map one to one onto ``h x z rx ry rz cx cz`` (every entry of the
simulator's gate table :data:`qhead.simulator.GATES`; a test checks that none is
missing). Conventions, written into the file header:

* qubit ``q[k]`` is qhead's wire k; **wire 0 is the most significant bit** of the basis
  index (PennyLane's convention). Qiskit prints bit strings with ``c[0]`` rightmost, so a
  Qiskit counts key reads in reverse wire order.
* ``rx/ry/rz(θ) = exp(−iθσ/2)`` in both qhead and qelib1.inc; angles are written with 17
  significant digits (a float64 round trip).
* ⟨Z_k⟩ = P(c[i] = 0) − P(c[i] = 1) for the i-th measured wire k.

The state preparation is :func:`qhead.quantum.stateprep.mottonen_gates` of the encoded
map (qhead's encoding: flattened, zero-padded to 2^n, L2-normalised; an all-zero map is
|0…0⟩, which needs no gates).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from qhead.errors import QheadError
from qhead.quantum.stateprep import mottonen_gates

__all__ = ["QASM_GATES", "ExportError", "circuit_to_qasm"]

#: qhead gate name → (OpenQASM 2.0 ``qelib1.inc`` name, takes an angle).
QASM_GATES: dict[str, tuple[str, bool]] = {
    "H": ("h", False),
    "X": ("x", False),
    "Z": ("z", False),
    "RX": ("rx", True),
    "RY": ("ry", True),
    "RZ": ("rz", True),
    "CNOT": ("cx", False),
    "CZ": ("cz", False),
}


class ExportError(QheadError):
    """A circuit (or gate) that OpenQASM 2.0 export does not support."""


def _statement(name: str, wires: Sequence[int], angle: float | None) -> str:
    if name not in QASM_GATES:
        raise ExportError(
            f"cannot export gate {name!r} to OpenQASM 2.0; exportable gates: "
            f"{', '.join(QASM_GATES)}"
        )
    qasm, has_angle = QASM_GATES[name]
    args = ",".join(f"q[{w}]" for w in wires)
    if has_angle:
        if angle is None or not np.isfinite(angle):
            raise ExportError(f"gate {name} on wires {tuple(wires)} has no finite angle")
        return f"{qasm}({float(angle):.17g}) {args};"
    return f"{qasm} {args};"


def circuit_to_qasm(
    ops: Sequence[Any],
    weights: torch.Tensor,
    n_qubits: int,
    measured_wires: Sequence[int],
    *,
    features: torch.Tensor | None = None,
    comment: str = "",
) -> str:
    """The circuit as OpenQASM 2.0 text.

    Args:
        ops: the ansatz's gate list (:class:`qhead.simulator.Op`; ``param`` indexes
            ``weights``).
        weights: the (trained) angles.
        n_qubits: n.
        measured_wires: the measured wires, in output order.
        features: ``None`` → the ansatz alone (it acts on whatever state was prepared; no
            measurement). A map (any shape, N ≤ 2^n values) → the full circuit: its
            state preparation, the ansatz, and measurements of the measured wires into
            ``c[0..m−1]``.
        comment: extra header lines (``//`` is added).

    Raises:
        ExportError: a gate with no OpenQASM 2.0 equivalent, a non-finite angle, or a
            feature map that is non-finite or has more than 2^n values.
    """
    w = weights.detach().to(torch.float64).cpu()
    lines = [
        "OPENQASM 2.0;",
        'include "qelib1.inc";',
        "// exported by qhead; q[k] = qhead wire k, wire 0 = most significant bit of the",
        "// basis index (PennyLane convention); rx/ry/rz(t) = exp(-i t P / 2).",
    ]
    lines += [f"// {line}" for line in comment.splitlines()]
    lines.append(f"qreg q[{n_qubits}];")
    if features is not None:
        flat = features.detach().to(torch.float64).cpu().reshape(-1)
        if flat.numel() > 2**n_qubits:
            raise ExportError(f"feature map has {flat.numel()} values, more than 2^{n_qubits}")
        if not torch.isfinite(flat).all():
            raise ExportError("feature map contains NaN or infinity; cannot prepare it")
        lines.append(f"creg c[{len(measured_wires)}];")
        padded = np.zeros(2**n_qubits)
        padded[: flat.numel()] = flat.numpy()
        lines.append("// state preparation: Mottonen uniformly controlled RY cascade")
        if np.any(padded != 0):
            lines += [_statement(g.name, g.wires, g.angle) for g in mottonen_gates(padded)]
        else:
            lines.append("// all-zero map: qhead encodes it as |0...0>, nothing to prepare")
        lines.append("// ansatz")
    for op in ops:
        angle = None if op.param is None else float(w[op.param])
        lines.append(_statement(op.name, op.wires, angle))
    if features is not None:
        lines.append("// measurement: <Z_k> = P(c[i]=0) - P(c[i]=1), i-th measured wire k")
        lines += [f"measure q[{k}] -> c[{i}];" for i, k in enumerate(measured_wires)]
    return "\n".join(lines) + "\n"
