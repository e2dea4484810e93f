"""The compiled-CPU-kernel executor: autograd Functions over :mod:`qhead.simulator.kernels`.

Every function here starts from the raw features (the amplitude encoding is fused into
the kernels, forward and backward) and returns ``None`` — "declined" — for a batch the
kernels leave to the torch path (a row with non-finite values or a norm out of range).
Three kernels, chosen by the plan's shape:

* a product of one-qubit gates (Ansatz 1): ⟨Z_k⟩₀, ⟨X_k⟩₀ of the encoded state and the
  2×2 formula (:class:`_EncodedRY` for RY only, one autograd node);
* one real layer of one-qubit gates, CNOTs folded into the measurement (Ansatz 2 at
  D = 1): :class:`_EncodedLayer`;
* anything else: :class:`_EncodedGeneral`, the whole gate list applied to each example
  while its state stays in the core's cache (fused one-qubit matrices, CNOT, CZ; real
  arithmetic until the first complex gate), backward by the adjoint method.

The kernels differentiate with respect to the features and the fused matrices; autograd
carries the gradient from the matrices to the angles (:func:`plan.fused_matrices`).
"""

from __future__ import annotations

import numpy as np
import torch

from qhead.simulator import kernels
from qhead.simulator.gates import complex_dtype
from qhead.simulator.plan import (
    Local,
    Plan,
    fused_matrices,
    per_wire,
    product_matrices,
    ry_angle_map,
)
from qhead.simulator.torch_plan import product_from_zx, select_wires, to_all_wires

__all__ = ["run_features", "usable"]


def usable(features: torch.Tensor, n: int, shots: int | None) -> bool:
    """Whether the kernels can run this call (CPU float32/float64 ``[B, N]``, exact
    expectations, kernels enabled)."""
    return (
        shots is None and features.dim() == 2 and kernels.usable_features(features, n, 1)
    )


class _Declined(Exception):
    """A kernel left this batch to the torch path."""


def _zx_kernel(features, n, wires):
    """The kernel's ⟨Z⟩₀ and ⟨X⟩₀ of the measured wires (``[B, m]`` each) and the norms."""
    result = kernels.encoded_zx_forward(features, n)
    if result is None:
        raise _Declined
    z_all, x_all, norms = result
    return select_wires(z_all, wires), select_wires(x_all, wires), norms


def _zx_kernel_backward(ctx, features, gz, gx) -> torch.Tensor:
    """Feature gradient for upstream gradients of the measured wires' ⟨Z⟩₀, ⟨X⟩₀."""
    dtype = features.dtype
    gz_all = to_all_wires(gz.to(dtype), ctx.wires, ctx.n)
    gx_all = to_all_wires(gx.to(dtype), ctx.wires, ctx.n)
    return kernels.encoded_zx_backward(features, ctx.n, ctx.norms, gz_all, gx_all)


class _EncodedZX(torch.autograd.Function):
    """⟨Z_k⟩₀, ⟨X_k⟩₀ of ``amplitude_encode(features)``, with the fused backward."""

    @staticmethod
    def forward(ctx, features, n, wires, need_x):
        z, x, norms = _zx_kernel(features, n, wires)
        ctx.save_for_backward(features)
        ctx.norms, ctx.n, ctx.wires, ctx.need_x = norms, n, wires, need_x
        return z, (x if need_x else torch.zeros_like(z))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gz, gx):
        (features,) = ctx.saved_tensors
        # Unused outputs arrive as zeros (autograd materialises them); without ⟨X⟩ the
        # second output is a constant zero whose gradient must not reach the X terms.
        if not ctx.need_x:
            gx = torch.zeros_like(gz)
        return _zx_kernel_backward(ctx, features, gz, gx), None, None, None


class _EncodedRY(torch.autograd.Function):
    """Ansatz 1 with RY: cos θ_k·⟨Z_k⟩₀ − sin θ_k·⟨X_k⟩₀ of ``amplitude_encode(features)``
    in one autograd node (the kernel plus the formula; small ops cost more than the
    arithmetic here). θ is ``[m]``, the summed angle of each measured wire."""

    @staticmethod
    def forward(ctx, features, theta, n, wires):
        z, x, norms = _zx_kernel(features, n, wires)
        cos, sin = torch.cos(theta), torch.sin(theta)
        ctx.save_for_backward(features, z, x, cos, sin)
        ctx.norms, ctx.n, ctx.wires = norms, n, wires
        return z * cos - x * sin

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gout):
        features, z, x, cos, sin = ctx.saved_tensors
        grad_theta = -(gout * (z * sin + x * cos)).sum(0)
        grad = _zx_kernel_backward(ctx, features, gout * cos, gout * -sin)
        return grad, grad_theta, None, None


class _EncodedLayer(torch.autograd.Function):
    """Z-parities after one layer of real one-qubit gates on ``amplitude_encode(features)``."""

    @staticmethod
    def forward(ctx, features, mats, n, signs_t):
        result = kernels.encoded_layer_forward(features, n, mats, signs_t)
        if result is None:
            raise _Declined
        out, work, norms = result
        ctx.save_for_backward(mats)
        ctx.work, ctx.norms, ctx.signs_t = work, norms, signs_t
        ctx.n_features = features.shape[1]
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gout):
        (mats,) = ctx.saved_tensors
        grad, grad_mats = kernels.encoded_layer_backward(
            ctx.work, ctx.n_features, ctx.norms, mats, ctx.signs_t, gout
        )
        return grad, grad_mats.to(mats.dtype), None, None


class _Program:
    """A plan's body as kernel instructions (see :func:`kernels.general_forward`)."""

    def __init__(self, plan: Plan):
        rows, self.locals = [], []
        count = 0
        for segment in plan.body:
            if isinstance(segment, Local):
                kind = kernels.OP_REAL if segment.real else kernels.OP_COMPLEX
                rows += [(kind, w, 0, count + i) for i, w in enumerate(segment.wires)]
                self.locals.append(segment)
                count += len(segment.wires)
            else:
                for op in segment.ops:
                    kind = kernels.OP_CNOT if op.name == "CNOT" else kernels.OP_CZ
                    rows.append((kind, op.wires[0], op.wires[1], -1))
        self.prog = np.array(rows, dtype=np.int64).reshape(-1, 4)
        kinds = self.prog[:, 0]
        hits = np.flatnonzero(kinds == kernels.OP_COMPLEX)
        self.first_complex = int(hits[0]) if len(hits) else len(rows)
        self.complex = bool(len(hits))

    def matrices(self, weights: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``[M, 2, 2, 2]``: the fused matrices, (real, imaginary) on the last axis."""
        if not self.locals:
            return torch.zeros(0, 2, 2, 2, dtype=dtype)
        mats = [fused_matrices(local, weights, dtype) for local in self.locals]
        if not self.complex:
            real = torch.cat(mats)
            return torch.stack((real, torch.zeros_like(real)), -1)
        cplx = torch.cat([m.to(complex_dtype(dtype)) for m in mats])
        return torch.view_as_real(cplx.contiguous())


class _EncodedGeneral(torch.autograd.Function):
    """Any supported circuit on ``amplitude_encode(features)`` by the general kernel."""

    @staticmethod
    def forward(ctx, features, mats, n, program, signs_t):
        result = kernels.general_forward(
            features, n, program.prog, program.first_complex, mats, signs_t
        )
        if result is None:
            raise _Declined
        out, saved = result
        ctx.save_for_backward(mats)
        ctx.saved, ctx.n, ctx.program, ctx.signs_t = saved, n, program, signs_t
        ctx.n_features = features.shape[1]
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gout):
        (mats,) = ctx.saved_tensors
        program = ctx.program
        grad, grad_mats = kernels.general_backward(
            ctx.saved, ctx.n_features, ctx.n, program.prog, program.first_complex, mats,
            ctx.signs_t, gout,
        )
        return grad, grad_mats.to(mats.dtype), None, None, None


def _program(plan: Plan) -> _Program:
    if "program" not in plan._cache:
        plan._cache["program"] = _Program(plan)
    return plan._cache["program"]


def kernel_for(plan: Plan) -> str:
    """Which kernel runs ``plan``: "product", "layer" or "general" (the first two
    unroll the three lowest wires: n ≥ 3)."""
    if plan.n < kernels.MIN_QUBITS:
        return "general"
    if plan.product is not None:
        return "product"
    if plan.single_real_layer() is not None:
        return "layer"
    return "general"


def run_features(plan: Plan, features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor | None:
    """⟨Z⟩ of ``plan.wires`` for ``amplitude_encode(features, plan.n)`` → ``[B, m]``, or
    ``None`` when the kernels decline the batch (the caller then takes the torch path)."""
    n, wires, dtype = plan.n, plan.wires, features.dtype
    try:
        kind = kernel_for(plan)
        if kind == "product":
            angle_map = ry_angle_map(plan, wires, dtype, features.device)
            if angle_map is not None:
                # Ansatz 1 proper: one node for the kernel and the formula (the general
                # formula below takes about twenty small ops, forward and backward).
                theta = angle_map @ weights.reshape(-1).to(dtype)
                return _EncodedRY.apply(features, theta, n, wires)
            z0, x0 = _EncodedZX.apply(features, n, wires, plan.product_needs_x)
            full = product_matrices(plan, weights, dtype, wires)
            return product_from_zx(z0, x0, full, plan.product_needs_x)
        signs_t = plan.signs_t(dtype)
        if kind == "layer":
            layer = plan.single_real_layer()
            mats = per_wire(fused_matrices(layer, weights, dtype), layer.wires, range(n))
            return _EncodedLayer.apply(features, mats, n, signs_t)
        program = _program(plan)
        mats = program.matrices(weights, dtype)
        return _EncodedGeneral.apply(features, mats, n, program, signs_t)
    except _Declined:
        return None
