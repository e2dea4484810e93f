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
    signed_permutation,
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
    """A plan as kernel instructions (see :func:`kernels.general_forward`): one matrix
    per wire of each one-qubit segment, one signed permutation per run of two-qubit
    gates (a sign vector when the run is diagonal: CZs alone), and the circuit's X/CNOT
    tail as a last permutation (then every wire's ⟨Z⟩ is read by folding |ψ|², 2·2^n
    additions, instead of from a 2^n × m table)."""

    def __init__(self, plan: Plan, dtype: torch.dtype):
        rows, self.locals, tables = [], [], []
        count = 0
        n = plan.n
        identity = torch.arange(2**n)

        def permutation(index: torch.Tensor, sign: torch.Tensor | None) -> None:
            if torch.equal(index, identity):
                if sign is None:
                    return  # the run cancels out (a CNOT twice, say)
                rows.append((kernels.OP_SIGN, 0, len(tables)))
            else:
                rows.append((kernels.OP_PERM, 0, len(tables)))
            tables.append((index, sign))

        for segment in plan.body:
            if isinstance(segment, Local):
                kind = kernels.OP_REAL if segment.real else kernels.OP_COMPLEX
                rows += [(kind, w, count + i) for i, w in enumerate(segment.wires)]
                self.locals.append(segment)
                count += len(segment.wires)
            else:
                permutation(*signed_permutation(n, segment.ops))
        if plan.tail_perm:
            permutation(*signed_permutation(n, plan.tail_perm))
        self.prog = np.array(rows, dtype=np.int64).reshape(-1, 3)
        hits = np.flatnonzero(self.prog[:, 0] == kernels.OP_COMPLEX)
        self.first_complex = int(hits[0]) if len(hits) else len(rows)
        self.complex = bool(len(hits))
        dim = 2**n
        np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
        self.perms = np.zeros((max(len(tables), 1), dim), np.int64)
        self.signs = np.ones((max(len(tables), 1), dim), np_dtype)
        for i, (index, sign) in enumerate(tables):
            self.perms[i] = index.numpy()
            if sign is not None:
                self.signs[i] = sign.numpy()

    def matrices(self, weights: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``[M, 2, 2, 2]``: the fused matrices, (real, imaginary) on the last axis."""
        if not self.locals:
            return torch.zeros(1, 2, 2, 2, dtype=dtype)
        mats = [fused_matrices(local, weights, dtype) for local in self.locals]
        if not self.complex:
            real = torch.cat(mats)
            return torch.stack((real, torch.zeros_like(real)), -1)
        cplx = torch.cat([m.to(complex_dtype(dtype)) for m in mats])
        return torch.view_as_real(cplx.contiguous())


class _EncodedGeneral(torch.autograd.Function):
    """⟨Z⟩ of the measured wires for any supported circuit on
    ``amplitude_encode(features)``, by the general kernel."""

    @staticmethod
    def forward(ctx, features, mats, n, program, wires):
        result = kernels.general_forward(
            features, n, program.prog, program.first_complex, mats, program.perms,
            program.signs,
        )
        if result is None:
            raise _Declined
        z_all, saved = result
        ctx.save_for_backward(mats)
        ctx.saved, ctx.n, ctx.program, ctx.wires = saved, n, program, wires
        ctx.n_features = features.shape[1]
        return select_wires(z_all, wires)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gout):
        (mats,) = ctx.saved_tensors
        program = ctx.program
        dtype = torch.from_numpy(ctx.saved[0][:0]).dtype
        gz = to_all_wires(gout.to(dtype), ctx.wires, ctx.n)
        grad, grad_mats = kernels.general_backward(
            ctx.saved, ctx.n_features, ctx.n, program.prog, program.first_complex, mats,
            program.perms, program.signs, gz,
        )
        return grad, grad_mats.to(mats.dtype), None, None, None


def _program(plan: Plan, dtype: torch.dtype) -> _Program:
    key = ("program", dtype)
    if key not in plan._cache:
        plan._cache[key] = _Program(plan, dtype)
    return plan._cache[key]


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
        if kind == "layer":
            layer = plan.single_real_layer()
            mats = per_wire(fused_matrices(layer, weights, dtype), layer.wires, range(n))
            return _EncodedLayer.apply(features, mats, n, plan.signs_t(dtype))
        program = _program(plan, dtype)
        mats = program.matrices(weights, dtype)
        return _EncodedGeneral.apply(features, mats, n, program, wires)
    except _Declined:
        return None
