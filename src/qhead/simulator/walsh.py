"""Circuits in the Hadamard frame: phases and Walsh–Hadamard transforms.

Conjugating by H on every wire (H⊗ⁿ, written H) maps RX(θ) to RZ(θ), X to Z and
CNOT(c, t) to CNOT(t, c), exactly (up to global phases); RY(θ) = S·RX(θ)·S†, and RZ, Z,
S and CZ are diagonal; H on every wire at once just changes the frame the state is held
in. So a circuit U of RX, RY, RZ, X, Z, CNOT, CZ and columns of H (PennyLane's
``BasicEntanglerLayers`` and ``StronglyEntanglingLayers``, qhead's Ansatz 2, among
others) can be written

    U = [final phase] · H · diag(e^{iΦ_K}) · … · H · diag(e^{iΦ_1}) · Q,

where Q is an affine permutation of the basis (every X and CNOT, pushed to the front:
amplitude i goes to row τ(i) = A·i ⊕ b over the index bits) and each Φ_k a phase table,
Φ_k(j) = −½ Σ_p a_p (−1)^{popcount(j & m_p)}: every rotation angle a_p (or a constant:
π for a Z or an X seen from the other frame, ±π/2 for the S around an RY, three terms for
a CZ) pulled through the permutations after it becomes a Z-parity with a bit mask m_p.
Hence Φ_k = −½·WHT(v_k) with v_k[m] = Σ_{p: m_p = m} a_p (one transform of 2^n values per
segment and call, shared by the batch), and ∂L/∂a_p = −½·WHT(∂L/∂Φ_k)[m_p]. The final
phase commutes with the ⟨Z⟩ measurement and is dropped.

:func:`hadamard_frame` schedules the gates greedily into as few segments as it can:
in the computational frame it applies every ready diagonal gate and permutation, in the
Hadamard frame every ready RX (as an RZ) and permutation, and it changes frame only when
no ready gate fits the current one: for free when H is ready on every wire (the column is
the change of frame), else with one transform. ``BasicEntanglerLayers``
(RX) becomes H·diag·H·Q (one segment after a leading transform on the real encoded
state) whatever its depth; ``StronglyEntanglingLayers`` (Rot = RZ·RY·RZ) two segments per
layer.

Per example the kernel then does: the encoding (scattered by τ), for each segment its
phase (fused with the first radix-4 pass of its transform) and one Walsh–Hadamard
transform (real while the state is), and the ⟨Z⟩ folds; the backward, from the last
segment: one transform of λ, a read-only sweep that gives ∂L/∂Φ_k (summed over the
batch) from the segment's input state, which the forward kept (2K + 1 real arrays per
example: memory O(K·2^n), where the gate-by-gate adjoint keeps one; none kept when no
backward follows), and the phase undone on λ inside the next transform's first pass. A
gate-by-gate simulator instead applies D·n one-qubit matrices and D permutations forward
and undoes them backward (``benchmarks/kernel_profile.py``); a segment's transform costs
about as much as n/2 one-qubit matrices (:func:`worth_it`).

This module compiles a circuit into that form and builds the phase tables per call; the
kernel itself is :func:`qhead.simulator.kernels.walsh_forward` / ``walsh_backward``
(numba), in the lane layout of the general kernel (``state[j·L + l]`` is amplitude j of
example l of a group of L ≤ ``kernels.LANES``), whose ⟨Z⟩ folds, ±g sums, buffer pool
and thread split it shares.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from qhead.simulator import kernels
from qhead.simulator.ops import GATES, Op, flat_index

__all__ = [
    "HadamardFrame",
    "Segment",
    "backward",
    "forward",
    "hadamard_frame",
    "phase_tables",
    "worth_it",
]

#: The gates a Hadamard-frame circuit may contain (H only in columns on every wire).
FRAME_GATES = frozenset({"RX", "RY", "RZ", "X", "Z", "CNOT", "CZ", "H"})

#: A forward keeps K states per example for its backward; above this many bytes for the
#: batch the caller takes the gate-by-gate kernel (one state per example) instead.
MAX_SAVED_BYTES = 1 << 30


@dataclass(frozen=True, eq=False)
class Segment:
    """The phase diag(e^{iΦ}) before one transform: Φ = −½ Σ_t a_t (−1)^{popcount(j & m_t)}
    with a_t = ``sign[t]``·(``weights.reshape(-1)[param[t]]`` if ``param[t]`` ≥ 0 else
    ``const[t]``).

    Attributes:
        masks: ``[T]`` int64 Z-parity masks (bit n − 1 − w is wire w).
        param: ``[T]`` int64 flat weight index, −1 for a constant term.
        sign: ``[T]`` float64, ±1.
        const: ``[T]`` float64, the constant terms' angles (0 where ``param`` ≥ 0).
    """

    masks: np.ndarray
    param: np.ndarray
    sign: np.ndarray
    const: np.ndarray


@dataclass(frozen=True, eq=False)
class HadamardFrame:
    """A circuit of :data:`FRAME_GATES` as phases and transforms (module docstring).

    Attributes:
        n: number of qubits.
        tau: ``[2^n]`` int64, where the encoding puts amplitude i: row tau[i] (Q).
        leading_transform: the first transform comes before any phase (it acts on the
            real encoded state; ``segments[0]`` is then the phase after it).
        segments: the phased segments in order (at least one), each followed by a
            transform — except that with ``leading_transform`` the transform comes first.
        weights: number of weights (``weights.reshape(-1)``).
        one_qubit_gates: the circuit's RX, RY and H count (the cost model of
            :func:`worth_it`).
        real: every gate is real (the gate-by-gate kernel then keeps the state real).
    """

    n: int
    tau: np.ndarray
    leading_transform: bool
    segments: tuple[Segment, ...]
    weights: int
    one_qubit_gates: int
    real: bool

    def saved_bytes(self, batch: int, itemsize: int) -> int:
        """Bytes of the states a forward keeps for its backward."""
        return (1 + 2 * len(self.segments)) * batch * 2**self.n * itemsize


# Tokens of the scheduler: kind "Z" (diagonal in the computational frame), "X" (RX:
# diagonal in the Hadamard frame), "P" (X, CNOT: a permutation in either frame) or "H"
# (one wire's share of a column of H, which changes the frame).
_HALF_PI = math.pi / 2


def _tokens(ops: tuple[Op, ...], shape: tuple[int, ...]):
    """(kind, wires, payload) per elementary step: payload a list of (wires of the
    parity, flat param or −1, constant angle) for "Z"/"X", the op for "P", None for
    "H"."""
    tokens = []
    for op in ops:
        param = -1 if op.param is None else flat_index(op.param, shape)
        wires = op.wires
        if op.name == "RZ":
            tokens.append(("Z", wires, [(wires, param, 0.0)]))
        elif op.name == "Z":
            tokens.append(("Z", wires, [(wires, -1, math.pi)]))
        elif op.name == "CZ":
            # π·x_a·x_b = π/4·(1 − z_a − z_b + z_a·z_b): three parities
            a, b = wires
            tokens.append(("Z", wires, [((a,), -1, _HALF_PI), ((b,), -1, _HALF_PI),
                                        ((a, b), -1, -_HALF_PI)]))
        elif op.name == "RX":
            tokens.append(("X", wires, [(wires, param, 0.0)]))
        elif op.name == "RY":  # S·RX·S†, S = RZ(π/2) up to a global phase
            tokens.append(("Z", wires, [(wires, -1, -_HALF_PI)]))
            tokens.append(("X", wires, [(wires, param, 0.0)]))
            tokens.append(("Z", wires, [(wires, -1, _HALF_PI)]))
        elif op.name == "H":
            tokens.append(("H", wires, None))
        else:
            tokens.append(("P", wires, op))
    return tokens


def _schedule(tokens, n: int) -> list[tuple] | None:
    """The primitive sequence in the current frame's basis, in application order:
    ("H",), ("T", mask, param, constant) or ("P", "X", bit) / ("P", "CNOT", c, t); None
    when an H acts on some wires only where the frame would need it on all.

    Token j waits for every earlier token on a shared wire that does not commute with it
    (diagonals of one frame commute with each other): per wire, the tokens since the last
    change of kind form a run; j depends on the current run, or, when it joins that run,
    on the run before it (earlier tokens are their ancestors). Then a topological order
    that stays in one frame as long as a ready token fits it (O(tokens + dependencies))."""
    count = len(tokens)
    successors: list[list[int]] = [[] for _ in range(count)]
    waiting = [0] * count
    runs: dict[int, tuple[str, list[int], list[int]]] = {}  # wire: (kind, run, run before)
    for j, (kind, wires, _) in enumerate(tokens):
        parents: set[int] = set()
        for w in wires:
            run_kind, run, before = runs.get(w, ("", [], []))
            if kind == run_kind and kind in "ZX":
                parents.update(before)
                run.append(j)
            else:
                parents.update(run)
                runs[w] = (kind, [j], run)
        for i in parents:
            successors[i].append(j)
        waiting[j] = len(parents)
    ready: dict[str, list[int]] = {"Z": [], "X": [], "P": [], "H": []}
    for j in range(count):
        if waiting[j] == 0:
            ready[tokens[j][0]].append(j)

    def bit(w: int) -> int:
        return 1 << (n - 1 - w)

    def release(j: int) -> None:
        for i in successors[j]:
            waiting[i] -= 1
            if waiting[i] == 0:
                ready[tokens[i][0]].append(i)

    frame, out, emitted = "Z", [], 0
    while emitted < count:
        while ready["P"] or ready[frame]:
            j = (ready["P"] or ready[frame]).pop()
            emitted += 1
            kind, wires, payload = tokens[j]
            if kind != "P":
                for parity, param, const in payload:
                    out.append(("T", sum(bit(w) for w in parity), param, const))
            elif payload.name == "X":
                # in the Hadamard frame an X is a Z: RZ(π) up to a global phase
                out.append(("P", "X", bit(wires[0])) if frame == "Z"
                           else ("T", bit(wires[0]), -1, math.pi))
            else:
                c, t = wires if frame == "Z" else wires[::-1]
                out.append(("P", "CNOT", bit(c), bit(t)))
            release(j)
        if emitted == count:
            break
        column = {tokens[j][1][0]: j for j in ready["H"]}
        if len(column) == n:
            # H on every wire: the state in the other frame is the one held now, so the
            # column costs nothing but the change of frame
            ready["H"] = [j for j in ready["H"] if column[tokens[j][1][0]] != j]
            for j in column.values():
                emitted += 1
                release(j)
        elif ready["Z"] or ready["X"]:
            out.append(("H",))
        else:
            return None  # H on some wires only, and nothing else can go first
        frame = "X" if frame == "Z" else "Z"
    if frame == "X":
        out.append(("H",))
    return out


def _apply(columns: list[int], x: int) -> int:
    """A·x over GF(2), A given by its columns (columns[i] = A·e_i, e_i = bit i)."""
    y, i = 0, 0
    while x:
        if x & 1:
            y ^= columns[i]
        x >>= 1
        i += 1
    return y


def hadamard_frame(ops: tuple[Op, ...], n: int, shape: tuple[int, ...]) -> HadamardFrame | None:
    """The circuit ``ops`` (weights of ``shape``) in the Hadamard frame, or None when it
    has a gate outside :data:`FRAME_GATES` or needs no transform (only diagonal gates and
    permutations: nothing for a phase to act on)."""
    if not ops or any(op.name not in FRAME_GATES for op in ops):
        return None
    primitives = _schedule(_tokens(ops, shape), n)
    if primitives is None or not any(p[0] == "H" for p in primitives):
        return None
    # Walk from the last primitive to the first with U = E·R·(rest), R: x ↦ A·x ⊕ b a
    # permutation pushed towards the front; B = A^{−T} carries the masks: R·diag(m) =
    # diag(B·m, sign (−1)^{(B·m)·b})·R, and R·H = H·R' with A' = A^{−T}, b' = 0 and a
    # Z-parity of mask b (π) left in front of the transform.
    a_cols = [1 << i for i in range(n)]
    b_cols = [1 << i for i in range(n)]
    shift = 0
    segments: list[list[tuple[int, int, float, float]]] = [[]]  # from the last one
    for primitive in reversed(primitives):
        if primitive[0] == "H":
            constant = shift
            a_cols, b_cols, shift = b_cols, a_cols, 0
            segments.append([])
            if constant:
                segments[-1].append((constant, -1, 1.0, math.pi))
        elif primitive[0] == "T":
            _, mask, param, const = primitive
            image = _apply(b_cols, mask)
            sign = -1.0 if bin(image & shift).count("1") % 2 else 1.0
            segments[-1].append((image, param, sign, const))
        elif primitive[1] == "X":
            shift ^= _apply(a_cols, primitive[2])
        else:
            c, t = primitive[2].bit_length() - 1, primitive[3].bit_length() - 1
            a_cols[c] ^= a_cols[t]  # A ← A·C, C·e_c = e_c ⊕ e_t
            b_cols[t] ^= b_cols[c]  # B ← B·Cᵀ, Cᵀ·e_t = e_t ⊕ e_c
    # segments[0] (after the last transform) is the dropped final phase; the rest are
    # the phases before each transform, last first.
    before = segments[1:][::-1]
    leading = not before[0]
    if leading:
        before = before[1:]
    if not before:
        return None
    basis = np.arange(2**n, dtype=np.int64)
    tau = np.full(2**n, shift, dtype=np.int64)
    for i, column in enumerate(a_cols):
        tau ^= ((basis >> i) & 1) * column
    built = []
    for terms in before:
        masks, params, signs, consts = zip(*terms, strict=True) if terms else ((), (), (), ())
        built.append(Segment(
            masks=np.array(masks, dtype=np.int64), param=np.array(params, dtype=np.int64),
            sign=np.array(signs, dtype=np.float64), const=np.array(consts, dtype=np.float64),
        ))
    return HadamardFrame(
        n=n, tau=tau, leading_transform=leading, segments=tuple(built),
        weights=math.prod(shape), one_qubit_gates=sum(op.name in ("RX", "RY", "H") for op in ops),
        real=all(GATES[op.name].real for op in ops),
    )


def worth_it(frame: HadamardFrame) -> bool:
    """Whether the frame beats the gate-by-gate kernel (which applies one matrix per RX,
    RY or H run, ``frame.one_qubit_gates`` counting them): a phased segment's complex
    transform (forward, and backward on λ) costs about n/2 one-qubit matrices on a
    complex state with their adjoint steps (measured: a strongly-entangling layer's two
    segments against its n RY), a real leading transform half of that; on a real circuit
    the gate-by-gate kernel's matrices cost half as much (``basic-entangler`` with RY:
    7.6 / 11.5 / 16.8 ms gate by gate against 7.9 / 16.0 / 26.7 ms in the frame at
    D = 1 / 3 / 5)."""
    cost = len(frame.segments) * frame.n / 2 + (frame.n / 4 if frame.leading_transform else 0)
    return cost <= frame.one_qubit_gates * (0.5 if frame.real else 1.0)


def phase_tables(frame: HadamardFrame, weights: np.ndarray, dtype, lease: kernels.Lease
                 ) -> tuple[np.ndarray, np.ndarray]:
    """cos Φ_k and sin Φ_k ``[K, 2^n]`` in ``dtype`` for ``weights`` (flat, float64),
    times the unnormalised transforms' factors: 2^{−n/2} each, and another 2^{−n/2} on
    the first table when a transform comes first (its state is kept unnormalised)."""
    dim, count = 2**frame.n, len(frame.segments)
    v = np.zeros((count, dim))
    for k, segment in enumerate(frame.segments):
        angles = np.where(segment.param >= 0, weights[np.maximum(segment.param, 0)],
                          segment.const) * segment.sign
        np.add.at(v[k], segment.masks, angles)
    # float32 tables from float32 trigonometry after the float64 reduction to [−π, π]:
    # numpy's vectorised float32 cos/sin (0.02 ms for 2^15 values) instead of float64's
    # (0.3–0.5 ms), the tables' error still at float32 rounding.
    phi = kernels.walsh_phase_angles(v, dtype)
    scale = np.full((count, 1), 0.5 ** (frame.n / 2), dtype=dtype)
    if frame.leading_transform:
        scale[0] *= scale[0]
    cos, sin = lease.array((count, dim), dtype), lease.array((count, dim), dtype)
    np.cos(phi, out=cos)
    np.sin(phi, out=sin)
    cos *= scale
    sin *= scale
    return cos, sin


def forward(features: torch.Tensor, frame: HadamardFrame, weights: torch.Tensor,
            keep_states: bool = True) -> tuple[torch.Tensor, tuple | None] | None:
    """⟨Z_k⟩ of every wire k of the circuit of ``frame`` on amplitude_encode(features),
    for the flat weights ``weights`` ``[frame.weights]``.

    Returns:
        ``(z [B, n], saved)`` (keep ``saved`` whole for :func:`backward`: it owns pooled
        memory; None with ``keep_states=False``, a forward without backward, which then
        writes two states per example instead of 2K + 1), or None when the kernel
        declines the batch (a row needs the torch encoder).
    """
    lease = kernels.Lease()
    dtype = np.float32 if features.dtype == torch.float32 else np.float64
    cos, sin = phase_tables(frame, weights.detach().to(torch.float64).numpy(), dtype, lease)
    return kernels.walsh_forward(features, frame.n, frame.tau, frame.leading_transform,
                                 cos, sin, lease, keep=keep_states)


def backward(saved: tuple, features: torch.Tensor, frame: HadamardFrame, gz: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of ``Σ gz·z`` (:func:`forward`; ``gz`` ``[B, n]``) with respect to the
    features and to the flat weights (float64): ∂L/∂a_p = −½·WHT(∂L/∂Φ_k)[m_p]."""
    grad, transformed = kernels.walsh_backward(saved, features, gz)
    weights_grad = np.zeros(frame.weights)
    for k, segment in enumerate(frame.segments):
        used = segment.param >= 0
        np.add.at(weights_grad, segment.param[used],
                  -0.5 * segment.sign[used] * transformed[k][segment.masks[used]])
    return grad, torch.from_numpy(weights_grad)
