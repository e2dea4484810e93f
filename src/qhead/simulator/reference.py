"""The reference executor: every gate applied in turn with the elementary gate functions.

No fusion, no folding, no closed forms: the slowest and simplest path
(``run_circuit(..., optimize=False)``, ``AEVQC(simulator="torch")``). The tests use it
next to PennyLane and a dense-matrix numpy simulator to check the fast paths.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from qhead.simulator.gates import apply_matrix, cnot, cz, hadamard, rx, ry, rz
from qhead.simulator.measure import expval_z, sample_expval_z
from qhead.simulator.ops import Op

__all__ = ["evolve", "run_reference"]

_X = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
_Z = torch.tensor([[1.0, 0.0], [0.0, -1.0]])


def _fixed(matrix: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    return matrix.to(device=state.device, dtype=state.real.dtype)


_APPLY = {
    "H": lambda s, op, w: hadamard(s, op.wires[0]),
    "X": lambda s, op, w: apply_matrix(s, _fixed(_X, s), op.wires[0]),
    "Z": lambda s, op, w: apply_matrix(s, _fixed(_Z, s), op.wires[0]),
    "RX": lambda s, op, w: rx(s, w[op.param], op.wires[0]),
    "RY": lambda s, op, w: ry(s, w[op.param], op.wires[0]),
    "RZ": lambda s, op, w: rz(s, w[op.param], op.wires[0]),
    "CNOT": lambda s, op, w: cnot(s, *op.wires),
    "CZ": lambda s, op, w: cz(s, *op.wires),
}


def evolve(state: torch.Tensor, ops: Sequence[Op], weights: torch.Tensor) -> torch.Tensor:
    """The state after ``ops``, gate by gate (every gate of the gate table)."""
    for op in ops:
        state = _APPLY[op.name](state, op, weights)
    return state


def run_reference(
    state: torch.Tensor,
    ops: Sequence[Op],
    weights: torch.Tensor,
    wires: Sequence[int],
    shots: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Applies ``ops`` one by one to ``state`` (``[B] + [2] * n``) → ``[B, m]`` ⟨Z⟩ of
    ``wires`` (or shot estimates)."""
    state = evolve(state, ops, weights)
    if shots is None:
        return expval_z(state, wires)
    return sample_expval_z(state, wires, shots, generator)
