"""Runs one circuit on several of qhead's simulator implementations, for tests that
compare them (outputs and gradients)."""

from __future__ import annotations

import torch

from qhead.simulator import run_encoded_circuit


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
