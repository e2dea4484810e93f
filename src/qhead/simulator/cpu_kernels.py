"""The compiled-CPU-kernel executor: autograd Functions over :mod:`qhead.simulator.kernels`.

Every function here starts from the raw features (the amplitude encoding is fused into
the kernels, forward and backward) and returns ``None`` — "declined" — for a batch the
kernels leave to the torch path (a row with non-finite values or a norm out of range).
Four kernels, chosen by the plan's shape (:func:`kernel_for`):

* a product of one-qubit gates (Ansatz 1): ⟨Z_k⟩₀, ⟨X_k⟩₀ of the encoded state and the
  2×2 formula (:class:`_EncodedRY` for RY only, one autograd node);
* a circuit of RX, RY, RZ, X, Z, CNOT, CZ and columns of H where it pays
  (``basic-entangler``, ``strongly-entangling``, Ansatz 2 at D ≥ 2): phases and
  Walsh–Hadamard transforms in the Hadamard frame,
  one transform per change of frame (``basic-entangler``: two whatever the depth;
  :class:`_EncodedWalsh`, :mod:`qhead.simulator.walsh`);
* one real layer of one-qubit gates, CNOTs folded into the measurement (Ansatz 2 at
  D = 1): :class:`_EncodedLayer`;
* anything else: :class:`_EncodedGeneral`, the whole gate list applied to each example
  while its state stays in the core's cache (fused one-qubit matrices, CNOT, CZ; real
  arithmetic until the first complex gate), backward by the adjoint method.

The kernels differentiate with respect to the features and the fused matrices (the
Hadamard-frame kernel: the rotation angles); autograd carries the gradient from the
matrices to the angles (:func:`plan.fused_matrices`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from qhead.simulator import kernels, walsh
from qhead.simulator.gates import complex_dtype
from qhead.simulator.ops import GATES, Op
from qhead.simulator.plan import (
    Local,
    Plan,
    fused_matrices,
    local_from,
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
        out, work, norms, lease = result
        ctx.save_for_backward(mats)
        ctx.work, ctx.norms, ctx.signs_t, ctx.lease = work, norms, signs_t, lease
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


#: A phase term of one wire: (flat index of an angle in the weights, or None; constant).
_Term = tuple[int | None, float]


def wire_sequences(local: Local) -> dict[int, list[tuple[str, int | None]]]:
    """Each wire's gates of a :class:`Local` in order, as (name, flat angle index)."""
    sequences: dict[int, list[tuple[str, int | None]]] = {w: [] for w in local.wires}
    for slot in local.slots:
        for name, (positions, params) in slot.items():
            for i, pos in enumerate(positions):
                sequences[local.wires[pos]].append((name, None if params is None else params[i]))
    return sequences


def _wire_ops(wire: int, sequence: list[tuple[str, int | None]]) -> list[Op]:
    """The gates of :func:`wire_sequences` on ``wire`` as ops over the flat weights."""
    return [Op(name, (wire,), None if p is None else (p,)) for name, p in sequence]


def euler_split(
    sequence: list[tuple[str, int | None]],
) -> tuple[list[_Term], list[tuple[str, int | None]], list[_Term]] | None:
    """One wire's run of gates as RZ(left)·R·RZ(right) up to a global phase, R real:
    ``(right terms, real gates, left terms)`` (an angle is the sum of its terms), or None
    when the run is not of that form.

    RZ is a phase term, a real gate of the gate table goes into R, and RX(θ) is
    RZ(−π/2)·RY(θ)·RZ(π/2). Phases between real gates are allowed only when they are
    constants that add up to a multiple of 2π (RZ(2πk) = ±I), as RX·RX gives.
    """
    right: list[_Term] = []
    real: list[tuple[str, int | None]] = []
    left: list[_Term] = []
    for name, param in sequence:
        spec = GATES[name]
        if spec.real:
            atoms = [("real", name, param)]
        elif spec.axis == "Z":
            atoms = [("phase", param, 0.0)]
        elif spec.axis == "X":
            atoms = [("phase", None, math.pi / 2), ("real", "RY", param),
                     ("phase", None, -math.pi / 2)]
        else:  # pragma: no cover - every complex gate of the table is RX or RZ today
            return None
        for kind, a, b in atoms:
            if kind == "phase":
                (left if real else right).append((a, b))
                continue
            if left:
                turn = sum(c for _, c in left) / (2 * math.pi)
                if any(p is not None for p, _ in left) or abs(turn - round(turn)) > 1e-12:
                    return None
                left = []
            real.append((a, b))
    return right, real, left


class _Program:
    """A plan as kernel instructions (see :func:`kernels.general_forward`): one matrix
    per wire of each one-qubit segment, one signed permutation per run of two-qubit
    gates (a sign vector when the run is diagonal: CZs alone), and the circuit's X/CNOT
    tail as a last permutation (then every wire's ⟨Z⟩ is read by folding |ψ|², 2·2^n
    additions, instead of from a 2^n × m table).

    A complex segment whose wires' runs are RZ·(real gates)·RZ (:func:`euler_split`: Rot,
    RX, RY then RZ, …) runs as one phase instruction for every wire's right RZ, a real
    matrix per wire on the complex state, and one phase instruction for the left RZs:
    half the arithmetic of complex matrices forward and backward, and a phase's backward
    gives every wire's angle gradient in one fold. A phase with only permutations and
    phases after it changes no |ψ|² and is dropped. Wires that do not split keep their
    complex matrix; a segment with fewer than two splitting wires stays as it was.
    """

    def __init__(self, plan: Plan, dtype: torch.dtype):
        rows, self.locals, tables = [], [], []
        self._phase_terms: list[list[list[_Term]]] = []  # per table, per wire
        count = 0
        n = plan.n
        identity = torch.arange(2**n)
        flat_shape = (math.prod(plan.shape),)

        def permutation(index: torch.Tensor, sign: torch.Tensor | None) -> None:
            if torch.equal(index, identity):
                if sign is None:
                    return  # the run cancels out (a CNOT twice, say)
                rows.append((kernels.OP_SIGN, 0, len(tables)))
            else:
                rows.append((kernels.OP_PERM, 0, len(tables)))
            tables.append((index, sign))

        def matrices(local: Local, kind: int) -> None:
            nonlocal count
            rows.extend((kind, w, count + i) for i, w in enumerate(local.wires))
            self.locals.append(local)
            count += len(local.wires)

        def phase(terms: dict[int, list[_Term]]) -> None:
            if any(terms.values()):
                rows.append((kernels.OP_PHASE, 0, len(self._phase_terms)))
                self._phase_terms.append([terms.get(w, []) for w in range(n)])

        for segment in plan.body:
            if not isinstance(segment, Local):
                permutation(*signed_permutation(n, segment.ops))
                continue
            if segment.real:
                matrices(segment, kernels.OP_REAL)
                continue
            sequences = wire_sequences(segment)
            splits = {w: euler_split(seq) for w, seq in sequences.items()}
            if sum(split is not None for split in splits.values()) < 2:
                matrices(segment, kernels.OP_COMPLEX)
                continue
            phase({w: split[0] for w, split in splits.items() if split is not None})
            real = [op for w, split in splits.items() if split is not None
                    for op in _wire_ops(w, split[1])]
            if real:
                matrices(local_from(real, flat_shape), kernels.OP_REAL)
            rest = [op for w, split in splits.items() if split is None
                    for op in _wire_ops(w, sequences[w])]
            if rest:
                matrices(local_from(rest, flat_shape), kernels.OP_COMPLEX)
            phase({w: split[2] for w, split in splits.items() if split is not None})
        if plan.tail_perm:
            permutation(*signed_permutation(n, plan.tail_perm))
        # Phases after the last matrix only change phases: |ψ|² is the same without them.
        last_matrix = max((i for i, row in enumerate(rows)
                           if row[0] in (kernels.OP_REAL, kernels.OP_COMPLEX)), default=-1)
        rows = [row for i, row in enumerate(rows)
                if row[0] != kernels.OP_PHASE or i < last_matrix]
        kept = [row[2] for row in rows if row[0] == kernels.OP_PHASE]
        self._phase_terms = [self._phase_terms[t] for t in kept]
        renumber = {t: i for i, t in enumerate(kept)}
        rows = [(k, w, renumber[t]) if k == kernels.OP_PHASE else (k, w, t) for k, w, t in rows]
        self.prog = np.array(rows, dtype=np.int64).reshape(-1, 3)
        kinds = self.prog[:, 0]
        hits = np.flatnonzero((kinds == kernels.OP_COMPLEX) | (kinds == kernels.OP_PHASE))
        self.first_complex = int(hits[0]) if len(hits) else len(rows)
        self.complex = bool((kinds == kernels.OP_COMPLEX).any())
        self.phase_grad = np.array(
            [any(p is not None for terms in table for p, _ in terms)
             for table in self._phase_terms] or [0], np.int8)
        self._phase_map = self._phase_linear_map(n, flat_shape[0])
        dim = 2**n
        np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
        self.perms = np.zeros((max(len(tables), 1), dim), np.int64)
        self.signs = np.ones((max(len(tables), 1), dim), np_dtype)
        for i, (index, sign) in enumerate(tables):
            self.perms[i] = index.numpy()
            if sign is not None:
                self.signs[i] = sign.numpy()

    def _phase_linear_map(self, n: int, params: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(A [T·n, P], c [T·n])``: the phase angles are ``A @ weights + c``."""
        if not self._phase_terms:
            return None
        a = torch.zeros(len(self._phase_terms) * n, params, dtype=torch.float64)
        c = torch.zeros(len(self._phase_terms) * n, dtype=torch.float64)
        for t, table in enumerate(self._phase_terms):
            for w, terms in enumerate(table):
                for param, constant in terms:
                    if param is not None:
                        a[t * n + w, param] += 1
                    c[t * n + w] += constant
        return a, c

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

    def phases(self, weights: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
        """``[T, n]``: the RZ angle of every wire in each phase instruction (None: none)."""
        if self._phase_map is None:
            return None
        a, c = self._phase_map
        angles = a.to(dtype) @ weights.reshape(-1).to(dtype) + c.to(dtype)
        return angles.reshape(len(self._phase_terms), -1)


class _EncodedGeneral(torch.autograd.Function):
    """⟨Z⟩ of the measured wires for any supported circuit on
    ``amplitude_encode(features)``, by the general kernel."""

    @staticmethod
    def forward(ctx, features, mats, phases, n, program, wires):
        result = kernels.general_forward(
            features, n, program.prog, program.first_complex, mats, program.perms,
            program.signs, phases,
        )
        if result is None:
            raise _Declined
        z_all, saved = result
        ctx.save_for_backward(features, mats)
        ctx.saved, ctx.n, ctx.program, ctx.wires = saved, n, program, wires
        ctx.phase_dtype = None if phases is None else phases.dtype
        return select_wires(z_all, wires)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gout):
        features, mats = ctx.saved_tensors
        program = ctx.program
        gz = to_all_wires(gout.to(features.dtype), ctx.wires, ctx.n)
        grad, grad_mats, grad_phases = kernels.general_backward(
            ctx.saved, features, ctx.n, program.prog, program.first_complex, mats,
            program.perms, program.signs, gz, program.phase_grad,
        )
        grad_phases = None if ctx.phase_dtype is None else grad_phases.to(ctx.phase_dtype)
        return grad, grad_mats.to(mats.dtype), grad_phases, None, None, None


class _EncodedWalsh(torch.autograd.Function):
    """⟨Z⟩ of the measured wires for a circuit in the Hadamard frame on
    ``amplitude_encode(features)`` (:mod:`qhead.simulator.walsh`); ``weights`` flat."""

    @staticmethod
    def forward(ctx, features, weights, frame, wires):
        z_all, saved = _walsh_forward(features, frame, weights, keep_states=True)
        ctx.save_for_backward(features)
        ctx.saved, ctx.frame, ctx.wires = saved, frame, wires
        ctx.weight_dtype = weights.dtype
        return select_wires(z_all, wires)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gout):
        (features,) = ctx.saved_tensors
        gz = to_all_wires(gout.to(features.dtype), ctx.wires, ctx.frame.n)
        grad, grad_weights = walsh.backward(ctx.saved, features, ctx.frame, gz)
        return grad, grad_weights.to(ctx.weight_dtype), None, None


def _walsh_forward(features, frame, weights, keep_states: bool):
    """:func:`walsh.forward`, raising :class:`_Declined` where the kernel declines."""
    result = walsh.forward(features, frame, weights, keep_states=keep_states)
    if result is None:
        raise _Declined
    return result


def _frame(plan: Plan) -> walsh.HadamardFrame | None:
    key = "hadamard-frame"
    if key not in plan._cache:
        plan._cache[key] = walsh.hadamard_frame(plan.ops, plan.n, plan.shape)
    return plan._cache[key]


def _program(plan: Plan, dtype: torch.dtype) -> _Program:
    key = ("program", dtype)
    if key not in plan._cache:
        plan._cache[key] = _Program(plan, dtype)
    return plan._cache[key]


def kernel_for(plan: Plan) -> str:
    """Which kernel runs ``plan``: "product", "walsh", "layer" or "general" ("product"
    and "layer" unroll the three lowest wires: n ≥ 3; "walsh" where the Hadamard frame
    takes fewer passes than the gates, :func:`walsh.worth_it`)."""
    frame = _frame(plan)
    walsh_pays = frame is not None and walsh.worth_it(frame)
    if plan.n < kernels.MIN_QUBITS:
        return "walsh" if walsh_pays else "general"
    if plan.product is not None:
        return "product"
    if plan.single_real_layer() is not None:
        return "layer"  # one real pass per wire: cheaper than any transform
    if walsh_pays:
        return "walsh"
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
        if kind == "walsh":
            frame = _frame(plan)
            if not (torch.is_grad_enabled()
                    and (features.requires_grad or weights.requires_grad)):
                # No backward will come: no states to keep (two per example, reused).
                z_all, _ = _walsh_forward(features, frame, weights.reshape(-1),
                                          keep_states=False)
                return select_wires(z_all, wires)
            if frame.saved_bytes(len(features), features.element_size()) <= walsh.MAX_SAVED_BYTES:
                return _EncodedWalsh.apply(features, weights.reshape(-1), frame, wires)
            kind = "general"  # the gate-by-gate adjoint keeps one state per example
        program = _program(plan, dtype)
        mats = program.matrices(weights, dtype)
        phases = program.phases(weights, dtype)
        return _EncodedGeneral.apply(features, mats, phases, n, program, wires)
    except _Declined:
        return None
