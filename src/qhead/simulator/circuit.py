"""Entry points: run a gate list on states (:func:`run_circuit`) or on features
(:func:`run_encoded_circuit`, what ``AEVQC`` calls).

The pieces live in one module per job:

* :mod:`qhead.simulator.ops` — the gate table (:data:`GATES`, :class:`Op`);
* :mod:`qhead.simulator.plan` — the plan compiler shared by the executors;
* :mod:`qhead.simulator.reference`, :mod:`qhead.simulator.torch_plan`,
  :mod:`qhead.simulator.cpu_kernels` — the executors;
* :mod:`qhead.simulator.backends` — their common interface and the rule that picks one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from qhead.simulator.backends import SIMULATORS, choose
from qhead.simulator.ops import GATES, GateSpec, Op, validate_ops
from qhead.simulator.plan import compile_plan
from qhead.simulator.reference import run_reference
from qhead.simulator.torch_plan import (
    ansatz1_closed_form,
    product_expval_z,
    run_plan,
    z_and_x,
)

__all__ = [
    "GATES",
    "GateSpec",
    "Op",
    "ansatz1_closed_form",
    "product_expval_z",
    "run_circuit",
    "run_encoded_circuit",
    "validate_ops",
    "z_and_x",
]


def _keep_in_graph(out: torch.Tensor, plan, weights: torch.Tensor) -> torch.Tensor:
    # Keep the weights in the graph so they get a zero gradient, not None (DDP and
    # optimisers expect every parameter to be used).
    if plan.uses_no_params and weights.requires_grad:
        return out + 0 * weights.sum().to(out.dtype)
    return out


def run_circuit(
    state: torch.Tensor,
    ops: Sequence[Op],
    weights: torch.Tensor,
    wires: Sequence[int],
    *,
    shots: int | None = None,
    generator: torch.Generator | None = None,
    optimize: bool = True,
) -> torch.Tensor:
    """Applies ``ops`` to ``state`` and measures ⟨Z⟩ on ``wires``.

    Args:
        state: ``[B] + [2] * n`` (real for the amplitude-encoded input).
        ops: the circuit.
        weights: angles, indexed by ``Op.param`` (shared by the batch).
        wires: the m measured wires, in output order.
        shots: ``None`` for exact expectations, else samples per example
            (straight-through gradient, see :func:`sample_expval_z`).
        generator: random generator for shot sampling.
        optimize: use the compiled plan (fused gates, permutation folding, closed
            form); ``False`` applies each gate in turn (reference).

    Returns:
        ``[B, m]``.
    """
    n = state.dim() - 1
    wires = tuple(int(w) for w in wires)
    ops = tuple(ops)
    if not optimize:
        return run_reference(state, ops, weights, wires, shots, generator)
    plan = compile_plan(ops, n, wires, tuple(weights.shape))
    out = run_plan(plan, state, weights, shots, generator, allow_kernel=True)
    return _keep_in_graph(out, plan, weights)


def run_encoded_circuit(
    features: torch.Tensor,
    n_qubits: int,
    ops: Sequence[Op],
    weights: torch.Tensor,
    wires: Sequence[int],
    *,
    shots: int | None = None,
    generator: torch.Generator | None = None,
    simulator: str = "auto",
) -> torch.Tensor:
    """``run_circuit(amplitude_encode(features, n_qubits), ops, ...)`` by the implementation
    :func:`qhead.simulator.backends.choose` picks.

    With ``simulator="auto"`` CPU float32/float64 exact calls run on the compiled kernels
    (any circuit; the encoding is fused into them and the states are never stored as
    torch tensors), everything else on the torch plan. Values and gradients are those
    of the reference composition (tested), all-zero rows included; a batch the kernels
    decline (non-finite values, norms out of range) takes the torch plan.

    Args:
        features: ``[B, N]`` real features (already flattened), N ≤ 2^n_qubits.
        n_qubits: register size n.
        ops, weights, wires, shots, generator: as for :func:`run_circuit`.
        simulator: "auto", "torch" (reference), "torch-plan" or "cpu-kernels".

    Returns:
        ``[B, m]``.

    Raises:
        ValueError: unknown ``simulator``, or a forced one that cannot run the call.
    """
    wires = tuple(int(w) for w in wires)
    plan = compile_plan(tuple(ops), n_qubits, wires, tuple(weights.shape))
    backend = choose(simulator, features, n_qubits, shots)
    out = backend.run(plan, features, weights, shots, generator)
    if out is None:  # declined by the kernels: the torch plan takes the batch
        out = SIMULATORS["torch-plan"].run(plan, features, weights, shots, generator)
    return _keep_in_graph(out, plan, weights)
