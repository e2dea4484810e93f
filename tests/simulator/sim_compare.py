"""Runs one circuit on several of qhead's simulator implementations, for tests that
compare them (outputs and gradients), and the dense matrix of one gate from the gate
table."""

from __future__ import annotations

import numpy as np
import sim_reference as ref
import torch

from qhead.simulator import GATES, run_encoded_circuit


def gate_matrix(op, weights, n: int) -> np.ndarray:
    """The 2^n × 2^n matrix of ``op`` from the gate table's unitary (its angle read from
    ``weights``, a numpy array or a tensor)."""
    spec = GATES[op.name]
    theta = None if op.param is None else float(weights[op.param])
    u = spec.unitary(theta)
    if spec.n_wires == 1:
        return ref.one_qubit(u, op.wires[0], n)
    return ref.two_qubit(u, op.wires, n)


def outputs_and_gradients(features, weights, n, ops, wires, upstream, threads=None,
                          names=("torch", "cpu-kernels")):
    """``{name: (output, ∂/∂features, ∂/∂weights)}`` of ``Σ upstream·output`` for each
    forced implementation, on ``threads`` torch threads (unchanged when None); the inputs
    are cloned, so every implementation starts from the same tensors."""
    results = {}
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        for name in names:
            x = features.clone().requires_grad_()
            w = weights.clone().requires_grad_()
            out = run_encoded_circuit(x, n, ops, w, wires, simulator=name)
            (out * upstream).sum().backward()
            results[name] = (out.detach(), x.grad, w.grad)
    finally:
        torch.set_num_threads(old_threads)
    return results


def float32_kernels_and_float64_reference(n, ops, shape, angle_scale, seed):
    """``(cpu-kernels in float32, torch reference in float64)`` outputs of ``ops`` for 6
    random rows of 1000 features, angles uniform in [0, angle_scale), every wire measured
    (the float32 result cast to float64)."""
    g = torch.Generator().manual_seed(seed)
    weights = torch.rand(shape, generator=g, dtype=torch.float64) * angle_scale
    features = torch.randn(6, 1000, generator=g, dtype=torch.float64)
    exact = run_encoded_circuit(features, n, ops, weights, range(n), simulator="torch")
    fast = run_encoded_circuit(features.float(), n, ops, weights.float(), range(n),
                               simulator="cpu-kernels")
    return fast.double(), exact


def kernels_match_reference(n, ops, wires, shape, batch, threads):
    """Runs ``ops`` on the CPU kernels and on the torch reference for ``batch`` random
    rows of 2^n − 5 features (padding) with an all-zero row at ``batch // 2``, random
    weights and upstream gradient (all seeded by ``batch``), on ``threads`` threads;
    asserts equal outputs and gradients (float64) and returns the results."""
    g = torch.Generator().manual_seed(batch)
    weights = torch.rand(shape, generator=g, dtype=torch.float64) * 6.3
    features = torch.randn(batch, 2**n - 5, generator=g, dtype=torch.float64)
    features[batch // 2] = 0
    upstream = torch.randn(batch, len(wires), generator=g, dtype=torch.float64)
    results = outputs_and_gradients(features, weights, n, ops, wires, upstream, threads)
    for fast, slow in zip(results["cpu-kernels"], results["torch"], strict=True):
        torch.testing.assert_close(fast, slow, atol=1e-10, rtol=1e-8)
    return results
