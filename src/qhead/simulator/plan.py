"""The plan compiler: a gate list → a :class:`Plan` that every executor shares.

:func:`compile_plan` (cached per circuit) rewrites a gate list without changing what it
measures:

* trailing diagonal gates (Z, RZ, CZ) and permutations (X, CNOT) only permute |ψ|²:
  diagonal ones are dropped (they are phases) and the permutation is folded into the
  Z-eigenvalue table, so the state is never moved;
* gates on disjoint wires are reordered into as few alternating runs as possible
  (:func:`schedule`), and the rest is cut into segments: runs of one-qubit gates
  (:class:`Local`, fused per wire into one 2×2 matrix each by :func:`fused_matrices`,
  real when every gate of the run is) and runs of two-qubit gates (:class:`Classical`,
  CNOT and CZ: a signed permutation of the basis, one gather and one sign flip);
* circuits of one-qubit gates only (Ansatz 1) get :attr:`Plan.product`, which the
  executors evaluate without evolving a state at all.

The fused matrices are built with torch ops, so autograd carries gradients from them
to the angles; the executors (``torch_plan``, ``cpu_kernels``) only differentiate with
respect to the matrices.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from qhead.simulator.gates import complex_dtype, hadamard_matrix, rotation_matrix
from qhead.simulator.measure import z_signs
from qhead.simulator.ops import GATES, Op, flat_index

__all__ = [
    "Classical",
    "Local",
    "Plan",
    "compile_plan",
    "fused_matrices",
    "index_tensor",
    "local_from",
    "per_wire",
    "signed_permutation",
]

_FIXED = {
    "H": lambda dt, dev: hadamard_matrix(dt, dev),
    "X": lambda dt, dev: torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=dt, device=dev),
    "Z": lambda dt, dev: torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=dt, device=dev),
}


@dataclass
class Local:
    """One-qubit gates on several wires, fused per wire."""

    wires: list[int]
    # slots[j] = {gate name: (positions in `wires`, flat param indices or None)}
    slots: list[dict[str, tuple[list[int], list[int] | None]]]
    real: bool


@dataclass
class Classical:
    """A run of two-qubit gates (CNOT, CZ): a permutation of the basis with signs."""

    ops: tuple[Op, ...]


def signed_permutation(n: int, ops: Sequence[Op]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(index, sign)`` with ``new[j] = sign[j]·old[index[j]]`` for X, CNOT and CZ gates
    applied in order (``sign`` is None when every entry is +1)."""
    index = torch.arange(2**n)
    sign = None
    for op in ops:
        basis = torch.arange(2**n)
        bits = [1 << (n - 1 - w) for w in op.wires]
        if op.name == "CNOT":
            gate = torch.where(basis & bits[0] != 0, basis ^ bits[1], basis)
        elif op.name == "X":
            gate = basis ^ bits[0]
        elif op.name == "CZ":
            both = (basis & bits[0] != 0) & (basis & bits[1] != 0)
            flip = 1 - 2 * both.to(torch.int8)
            sign = flip if sign is None else flip * sign
            continue
        else:  # pragma: no cover - guarded by compile_plan
            raise AssertionError(op)
        # Applying `gate` after (index, sign): new[j] = sign[gate[j]]·orig[index[gate[j]]].
        index = index[gate]
        if sign is not None:
            sign = sign[gate]
    return index, sign


@dataclass
class Plan:
    """A compiled circuit (see the module docstring)."""

    ops: tuple[Op, ...]
    n: int
    wires: tuple[int, ...]
    shape: tuple[int, ...]
    body: list[Local | Classical]
    tail_perm: tuple[Op, ...]
    product: Local | None  # set when the circuit has one-qubit gates only
    uses_no_params: bool = False
    product_needs_x: bool = True
    _cache: dict = field(default_factory=dict)

    def index(self, ops: tuple[Op, ...], device) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The signed permutation of a :class:`Classical` segment on ``device``."""
        key = ("perm", ops, str(device))
        if key not in self._cache:
            index, sign = signed_permutation(self.n, ops)
            self._cache[key] = (index.to(device), None if sign is None else sign.to(device))
        return self._cache[key]

    def signs(self, dtype, device) -> torch.Tensor:
        """``[2^n, m]`` ±1 table of the measured Z's with the tail permutation folded in."""
        key = ("signs", dtype, str(device))
        if key not in self._cache:
            perm = signed_permutation(self.n, self.tail_perm)[0] if self.tail_perm else None
            self._cache[key] = z_signs(self.n, self.wires, dtype, device, permutation=perm)
        return self._cache[key]

    def signs_t(self, dtype) -> np.ndarray:
        """:meth:`signs` transposed, ``[m, 2^n]`` C-contiguous numpy (for the kernels)."""
        key = ("signs_t", dtype)
        if key not in self._cache:
            self._cache[key] = self.signs(dtype, torch.device("cpu")).T.contiguous().numpy()
        return self._cache[key]

    def single_real_layer(self) -> Local | None:
        """The body when it is one real :class:`Local` (Ansatz 2 at D = 1), else None."""
        body = self.body
        if self.product is None and len(body) == 1 and isinstance(body[0], Local):
            return body[0] if body[0].real else None
        return None


def local_from(ops: Sequence[Op], shape: tuple[int, ...]) -> Local:
    """A :class:`Local` of one-qubit gates (any wires; each wire keeps its order)."""
    per_wire: dict[int, list[Op]] = {}
    for op in ops:
        per_wire.setdefault(op.wires[0], []).append(op)
    wires = sorted(per_wire)
    depth = max(len(v) for v in per_wire.values())
    slots: list[dict[str, tuple[list[int], list[int] | None]]] = []
    for j in range(depth):
        slot: dict[str, tuple[list[int], list[int] | None]] = {}
        for pos, w in enumerate(wires):
            if j < len(per_wire[w]):
                op = per_wire[w][j]
                positions, params = slot.setdefault(
                    op.name, ([], [] if op.param is not None else None)
                )
                positions.append(pos)
                if params is not None:
                    params.append(flat_index(op.param, shape))
        slots.append(slot)
    real = all(GATES[op.name].real for op in ops)
    return Local(wires, slots, real)


def schedule(ops: Sequence[Op]) -> list[Op]:
    """The same circuit with gates on disjoint wires reordered into as few alternating
    runs of one-qubit and two-qubit gates as a greedy pass finds (each wire keeps its
    gate order, so the unitary is unchanged): e.g. SimplifiedTwoDesign's
    CZ, RY, RY, CZ, RY, RY, … becomes all its CZs, then all its RYs."""
    pending, out = list(ops), []
    while pending:
        for width in (1, 2):
            blocked: set[int] = set()
            rest = []
            for op in pending:
                if GATES[op.name].n_wires == width and not blocked.intersection(op.wires):
                    out.append(op)
                else:
                    rest.append(op)
                    blocked.update(op.wires)
            pending = rest
    return out


@functools.lru_cache(maxsize=128)
def compile_plan(
    ops: tuple[Op, ...], n: int, wires: tuple[int, ...], shape: tuple[int, ...]
) -> Plan:
    """Compiles a gate list measured on ``wires`` (cached; see the module docstring)."""
    source, ops = ops, tuple(schedule(ops))
    # Trailing diagonal gates and permutations only permute |ψ|²: drop / fold them.
    cut = len(ops)
    while cut > 0 and (GATES[ops[cut - 1].name].diagonal or GATES[ops[cut - 1].name].permutation):
        cut -= 1
    tail_perm = tuple(op for op in ops[cut:] if GATES[op.name].permutation)
    body_ops = ops[:cut]
    product = None
    if all(GATES[op.name].n_wires == 1 for op in ops):
        # Only gates on measured wires matter; trailing diagonals change nothing.
        kept = [op for op in ops[:cut] if op.wires[0] in wires] + [
            op for op in ops[cut:] if op.wires[0] in wires and op.name == "X"
        ]
        product = local_from(kept, shape) if kept else Local([], [], True)
    body: list[Local | Classical] = []
    run: list[Op] = []
    run_two = False
    for op in body_ops:
        two = GATES[op.name].n_wires == 2
        if run and run_two != two:
            body.append(Classical(tuple(run)) if run_two else local_from(run, shape))
            run = []
        run.append(op)
        run_two = two
    if run:
        body.append(Classical(tuple(run)) if run_two else local_from(run, shape))
    used = [op for op in body_ops if op.param is not None]
    if product is not None:
        used = [op for s in product.slots for _, p in s.values() if p for op in p]
    # Products of {RX, X, Z} keep Z within span{Z, Y} and products of {RZ, Z, X} within
    # span{Z}: ⟨Y⟩ = 0 for real states, so ⟨X⟩₀ is not needed.
    names = {op.name for op in ops}
    needs_x = not (names <= {"RX", "X", "Z"} or names <= {"RZ", "Z", "X"})
    return Plan(
        source, n, wires, shape, body, tail_perm, product,
        uses_no_params=not used, product_needs_x=needs_x,
    )


def fused_matrices(local: Local, weights: torch.Tensor, real_dtype: torch.dtype) -> torch.Tensor:
    """``[len(local.wires), 2, 2]``: per wire, the product of its gates (last one leftmost).

    Real when ``local.real``, else complex; differentiable with respect to ``weights``.
    """
    dtype = real_dtype if local.real else complex_dtype(real_dtype)
    device = weights.device
    count = len(local.wires)
    eye = torch.eye(2, dtype=dtype, device=device).expand(count, 2, 2)
    flat = weights.reshape(-1).to(real_dtype)
    fused = None
    for slot in local.slots:
        step = eye
        for name, (positions, params) in slot.items():
            if params is not None:
                angles = flat[index_tensor(params, device)]
                mats = rotation_matrix(name, angles).to(dtype)
            else:
                mats = _FIXED[name](real_dtype, device).to(dtype).expand(len(positions), 2, 2)
            if len(positions) == count:  # one gate on every wire: no identity to fill
                step = mats if positions == list(range(count)) else mats[_inverse(positions)]
            else:
                step = step.index_put((index_tensor(positions, device),), mats)
        fused = step if fused is None else step @ fused
    return eye if fused is None else fused


def per_wire(mats: torch.Tensor, gate_wires: list[int], wires) -> torch.Tensor:
    """Rows of ``mats`` (one per wire of ``gate_wires``) for ``wires``, identity elsewhere."""
    if list(wires) == gate_wires:
        return mats
    eye = torch.eye(2, dtype=mats.dtype, device=mats.device)
    position = {w: i for i, w in enumerate(gate_wires)}
    return torch.stack([mats[position[w]] if w in position else eye for w in wires])


def product_matrices(plan: Plan, weights: torch.Tensor, dtype, wires) -> torch.Tensor:
    """``[m, 2, 2]``: the fused one-qubit unitary of each measured wire (product plans)."""
    return per_wire(fused_matrices(plan.product, weights, dtype), plan.product.wires, wires)


def ry_angle_map(plan: Plan, wires, dtype, device) -> torch.Tensor | None:
    """``[m, P]`` 0/1 matrix summing each measured wire's RY angles, when the product
    circuit has RY gates only (Ansatz 1); else None."""
    key = ("ry_map", wires, dtype, str(device))
    if key not in plan._cache:
        local, result = plan.product, None
        if all(set(slot) <= {"RY"} for slot in local.slots):
            result = torch.zeros(len(wires), math.prod(plan.shape), dtype=dtype)
            row = {w: i for i, w in enumerate(wires)}
            for slot in local.slots:
                for positions, params in slot.values():
                    for pos, param in zip(positions, params, strict=True):
                        if local.wires[pos] in row:
                            result[row[local.wires[pos]], param] += 1
            result = result.to(device)
        plan._cache[key] = result
    return plan._cache[key]


_INDEX_TENSORS: dict = {}


def index_tensor(values: list[int], device) -> torch.Tensor:
    """A cached index tensor (building one from a list on every call costs more than the op)."""
    key = (tuple(values), str(device))
    tensor = _INDEX_TENSORS.get(key)
    if tensor is None:
        tensor = _INDEX_TENSORS[key] = torch.tensor(values, dtype=torch.long, device=device)
    return tensor


def _inverse(positions: list[int]) -> list[int]:
    inverse = [0] * len(positions)
    for i, p in enumerate(positions):
        inverse[p] = i
    return inverse
