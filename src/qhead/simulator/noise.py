"""Noise on the pure-state simulator: Pauli channels by Monte-Carlo trajectories, readout error.

Noise model (:class:`NoiseModel`), in PennyLane's conventions so that results compare with
``default.mixed``:

* after **every ansatz gate**, on each wire the gate acts on (both wires of a CNOT,
  independently): ``depolarizing`` p — X, Y or Z each with probability p/3
  (``qml.DepolarizingChannel(p)``: the Bloch vector shrinks by 1 − 4p/3);
  ``bit_flip`` p — X with probability p (``qml.BitFlip``); ``phase_flip`` p — Z with
  probability p (``qml.PhaseFlip``); applied in that order when several are set;
* optionally the same channels once on every wire of the **prepared state**
  (``on_prepared_state``), standing in for an imperfect state preparation;
* **readout error** p: every measured bit is flipped with probability p, independently
  per wire and shot. With exact expectations this scales ⟨Z_k⟩ by exactly 1 − 2p.

A Pauli channel is a mixture of unitaries, so ⟨Z_k⟩ under it is the average over random
Pauli insertions of the pure-state ⟨Z_k⟩ (a *trajectory*). :func:`noisy_expval_z` samples
``trajectories`` insertion patterns, evaluates each distinct pattern once on the whole
batch with :func:`qhead.simulator.run_circuit` (at low noise most patterns are empty, so
few distinct circuits run), and averages; its standard error is the spread over
trajectories / √T. One pattern is shared by the batch's examples in a trajectory (each
example's estimate is unbiased; estimates of different examples are correlated).

For circuits of one-qubit gates only (Ansatz 1) the channels act on each wire's Bloch
vector independently and the noisy ⟨Z_k⟩ is computed **exactly** (``method="exact"``; no
statistical error): the Bloch vector (⟨X⟩, ⟨Y⟩, ⟨Z⟩) of the encoded state is rotated by
each gate and scaled by each channel (depolarizing: all three by 1 − 4p/3; bit flip:
Y, Z by 1 − 2p; phase flip: X, Y by 1 − 2p).

With ``shots``, each trajectory draws shots/T basis states from its final state, flips
the measured bits with the readout probability and averages 1 − 2·bit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from qhead.errors import ConfigError
from qhead.simulator import (
    GATES,
    Op,
    amplitude_encode,
    apply_matrix,
    cnot,
    cz,
    hadamard,
    probabilities,
    run_circuit,
    rx,
    ry,
    rz,
    z_and_x,
)

__all__ = [
    "NoiseModel",
    "NoisyExpectation",
    "is_product_circuit",
    "noisy_encoded_expval_z",
    "noisy_expval_z",
    "sample_insertions",
]

_CHANNELS = ("depolarizing", "bit_flip", "phase_flip")


@dataclass(frozen=True)
class NoiseModel:
    """Probabilities of the noise channels (all 0: noiseless). See the module docstring.

    Attributes:
        depolarizing: p of the depolarizing channel after every ansatz gate, per wire.
        bit_flip: p of an X after every ansatz gate, per wire.
        phase_flip: p of a Z after every ansatz gate, per wire.
        readout: p that a measured bit is read flipped.
        on_prepared_state: also apply the gate channels once to every wire of the
            prepared (encoded) state.
    """

    depolarizing: float = 0.0
    bit_flip: float = 0.0
    phase_flip: float = 0.0
    readout: float = 0.0
    on_prepared_state: bool = False

    def __post_init__(self) -> None:
        for name in (*_CHANNELS, "readout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                0.0 <= float(value) <= 1.0
            ):
                raise ConfigError(f"noise.{name} must be a probability in [0, 1], got {value!r}")
            object.__setattr__(self, name, float(value))
        if not isinstance(self.on_prepared_state, bool):
            raise ConfigError(
                f"noise.on_prepared_state must be true or false, got {self.on_prepared_state!r}"
            )

    @property
    def gate_noise(self) -> bool:
        """Whether any Pauli channel is on (trajectories needed unless exact)."""
        return any(getattr(self, c) > 0 for c in _CHANNELS)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class NoisyExpectation:
    """Result of :func:`noisy_expval_z`.

    Attributes:
        mean: ``[B, m]`` estimated (or exact) noisy ⟨Z⟩.
        stderr: ``[B, m]`` standard error of ``mean`` (zeros when exact).
        trajectories: trajectories sampled (0 when exact).
        distinct_circuits: distinct insertion patterns that were simulated.
        method: ``"exact"`` or ``"trajectories"``.
    """

    mean: torch.Tensor
    stderr: torch.Tensor
    trajectories: int
    distinct_circuits: int
    method: str


def is_product_circuit(ops: Sequence[Op]) -> bool:
    """True when every gate acts on one wire (the noisy expectation is then exact)."""
    return all(GATES[op.name].n_wires == 1 for op in ops)


def _paulis(noise: NoiseModel, u: torch.Tensor) -> list[list[str]]:
    """For each row of uniforms ``u [K, 3]``: the Paulis the three channels insert."""
    out = []
    for a, b, c in u.tolist():
        inserted: list[str] = []
        if a < noise.depolarizing:
            inserted.append("XYZ"[min(2, int(3 * a / noise.depolarizing))])
        if b < noise.bit_flip:
            inserted.append("X")
        if c < noise.phase_flip:
            inserted.append("Z")
        out.append(inserted)
    return out


def _pauli_ops(pauli: str, wire: int) -> list[Op]:
    # Y = i·X·Z: Z then X is Y up to a global phase, which no expectation sees
    return {"X": [Op("X", (wire,))], "Z": [Op("Z", (wire,))],
            "Y": [Op("Z", (wire,)), Op("X", (wire,))]}[pauli]


def sample_insertions(
    ops: Sequence[Op], n_wires: int, noise: NoiseModel, trajectories: int,
    generator: torch.Generator | None = None,
) -> Counter:
    """Samples ``trajectories`` noisy versions of ``ops``.

    Returns:
        ``Counter`` mapping each distinct noisy gate list (a tuple of :class:`Op`) to how
        many trajectories drew it.
    """
    sites: list[tuple[int, int]] = []  # (index of the gate after which, wire); −1 = prepared
    if noise.on_prepared_state:
        sites += [(-1, w) for w in range(n_wires)]
    sites += [(i, w) for i, op in enumerate(ops) for w in op.wires]
    u = torch.rand(trajectories, len(sites), 3, generator=generator, dtype=torch.float64)
    patterns: Counter = Counter()
    for t in range(trajectories):
        after: dict[int, list[Op]] = {}
        for (index, wire), paulis in zip(sites, _paulis(noise, u[t]), strict=True):
            for pauli in paulis:
                after.setdefault(index, []).extend(_pauli_ops(pauli, wire))
        noisy = list(after.get(-1, []))
        for i, op in enumerate(ops):
            noisy.append(op)
            noisy += after.get(i, [])
        patterns[tuple(noisy)] += 1
    return patterns


_X = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
_Z = torch.tensor([[1.0, 0.0], [0.0, -1.0]])


def _evolve(state: torch.Tensor, ops: Sequence[Op], weights: torch.Tensor) -> torch.Tensor:
    """The final state, gate by gate (needed to sample shots with readout flips)."""
    for op in ops:
        w = op.wires
        if op.name == "H":
            state = hadamard(state, w[0])
        elif op.name in ("X", "Z"):
            matrix = (_X if op.name == "X" else _Z).to(state.real.dtype).to(state.device)
            state = apply_matrix(state, matrix, w[0])
        elif op.name == "CNOT":
            state = cnot(state, w[0], w[1])
        elif op.name == "CZ":
            state = cz(state, w[0], w[1])
        elif op.name in ("RX", "RY", "RZ"):
            gate = {"RX": rx, "RY": ry, "RZ": rz}[op.name]
            state = gate(state, weights[op.param], w[0])
        else:
            raise ConfigError(f"noisy shots: gate {op.name!r} is not supported "
                              "(H, X, Z, RX, RY, RZ, CNOT, CZ)")
    return state


def _sample_with_readout(
    state: torch.Tensor, wires: Sequence[int], shots: int, readout: float,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """``[B, m]``: mean of 1 − 2·bit over ``shots`` draws, each bit flipped w.p. ``readout``."""
    n = state.dim() - 1
    probs = probabilities(state).detach().reshape(state.shape[0], -1)
    probs = probs / probs.sum(dim=1, keepdim=True)
    index = torch.multinomial(probs, shots, replacement=True, generator=generator)  # [B, S]
    shifts = torch.tensor([n - 1 - k for k in wires], device=index.device)
    bits = (index[..., None] >> shifts) & 1  # [B, S, m]
    if readout > 0:
        flips = torch.rand(bits.shape, generator=generator, device=bits.device) < readout
        bits = bits ^ flips.to(bits.dtype)
    return (1 - 2 * bits).to(state.real.dtype).mean(dim=1)


_PAULI = {
    "X": torch.tensor([[0, 1], [1, 0]], dtype=torch.complex128),
    "Y": torch.tensor([[0, -1j], [1j, 0]], dtype=torch.complex128),
    "Z": torch.tensor([[1, 0], [0, -1]], dtype=torch.complex128),
}


def _gate_matrix(op: Op, weights: torch.Tensor) -> torch.Tensor:
    """The one-qubit gate's 2×2 unitary from the simulator's gate table (complex128)."""
    theta = None if op.param is None else float(weights[op.param])
    return torch.from_numpy(GATES[op.name].unitary(theta)).to(torch.complex128)


def _bloch_rotation(u: torch.Tensor) -> torch.Tensor:
    """R with R_ij = ½ tr(σ_i U σ_j U†): how U rotates the Bloch vector (X, Y, Z)."""
    paulis = [_PAULI[p] for p in "XYZ"]
    return torch.tensor([[0.5 * torch.trace(pi @ u @ pj @ u.conj().T).real.item()
                          for pj in paulis] for pi in paulis], dtype=torch.float64)


def _channel_scale(noise: NoiseModel) -> torch.Tensor:
    d = 1 - 4 * noise.depolarizing / 3
    bf, pf = 1 - 2 * noise.bit_flip, 1 - 2 * noise.phase_flip
    return torch.tensor([d * pf, d * bf * pf, d * bf], dtype=torch.float64)


def _exact_product(
    state: torch.Tensor, ops: Sequence[Op], weights: torch.Tensor, wires: Sequence[int],
    noise: NoiseModel,
) -> torch.Tensor:
    """Exact noisy ⟨Z⟩ of a one-qubit-gate circuit from per-wire Bloch vectors."""
    if state.is_complex():
        raise ConfigError("exact noisy expectations need a real encoded state")
    z, x = z_and_x(state, list(wires))  # [B, m] each; ⟨Y⟩ = 0 for a real state
    bloch = torch.stack([x, torch.zeros_like(x), z], dim=-1).to(torch.float64)  # [B, m, 3]
    scale = _channel_scale(noise).to(bloch.device)
    for i, wire in enumerate(wires):
        vector = bloch[:, i, :]
        if noise.on_prepared_state:
            vector = vector * scale
        for op in ops:
            if op.wires[0] != wire:
                continue
            vector = vector @ _bloch_rotation(_gate_matrix(op, weights)).T.to(vector.device)
            vector = vector * scale
        bloch[:, i, :] = vector
    return (bloch[..., 2] * (1 - 2 * noise.readout)).to(state.real.dtype)


def noisy_expval_z(
    state: torch.Tensor,
    ops: Sequence[Op],
    weights: torch.Tensor,
    wires: Sequence[int],
    noise: NoiseModel,
    *,
    trajectories: int = 100,
    shots: int | None = None,
    method: str = "auto",
    generator: torch.Generator | None = None,
) -> NoisyExpectation:
    """⟨Z⟩ of ``wires`` after ``ops`` under ``noise`` (no gradient).

    Args:
        state: ``[B] + [2] * n`` prepared state.
        ops, weights, wires: the circuit, as for :func:`qhead.simulator.run_circuit`.
        noise: the noise model.
        trajectories: T, Monte-Carlo trajectories (ignored when the result is exact).
        shots: ``None`` (exact expectation per trajectory) or shots per example in total;
            with shots, each trajectory draws shots/T of them (T ≤ shots; T is reduced to
            ``shots`` if larger; ``shots`` must then be a multiple of T).
        method: ``"auto"`` (exact for one-qubit-gate circuits without shots, trajectories
            otherwise), ``"exact"`` or ``"trajectories"``.
        generator: ``torch.Generator`` for reproducible trajectories and shots.

    Returns:
        :class:`NoisyExpectation` (mean, standard error, trajectories, distinct circuits).

    Raises:
        ConfigError: bad ``trajectories``/``shots``/``method``, or ``exact`` where it does
            not apply.
    """
    if method not in ("auto", "exact", "trajectories"):
        raise ConfigError(f"noise method must be auto, exact or trajectories, got {method!r}")
    if isinstance(trajectories, bool) or not isinstance(trajectories, int) or trajectories < 1:
        raise ConfigError(f"trajectories must be a positive integer, got {trajectories!r}")
    if shots is not None and (isinstance(shots, bool) or not isinstance(shots, int) or shots < 1):
        raise ConfigError(f"shots must be None (exact) or a positive integer, got {shots!r}")
    ops, wires = tuple(ops), tuple(int(w) for w in wires)
    n = state.dim() - 1
    product = is_product_circuit(ops)
    if method == "exact" and (not product or shots is not None):
        raise ConfigError(
            "noise method 'exact' applies to circuits of one-qubit gates without shots; "
            "use 'trajectories'"
        )
    with torch.no_grad():
        if shots is None and (method == "exact" or (method == "auto" and product)):
            mean = _exact_product(state, ops, weights, wires, noise)
            return NoisyExpectation(mean, torch.zeros_like(mean), 0, 1, "exact")
        if shots is None and not noise.gate_noise:
            mean = run_circuit(state, ops, weights, wires) * (1 - 2 * noise.readout)
            return NoisyExpectation(mean, torch.zeros_like(mean), 0, 1, "exact")
        t = trajectories
        per = 0
        if shots is not None:
            t = min(t, shots)
            if shots % t:
                raise ConfigError(
                    f"shots={shots} must be a multiple of trajectories={t} (each trajectory "
                    "draws the same number of shots)"
                )
            per = shots // t
        patterns = sample_insertions(ops, n, noise, t, generator) if noise.gate_noise else (
            Counter({ops: t}))
        total = torch.zeros(state.shape[0], len(wires), dtype=torch.float64, device=state.device)
        square = torch.zeros_like(total)
        for noisy, count in patterns.items():
            if shots is None:
                values = run_circuit(state, noisy, weights, wires) * (1 - 2 * noise.readout)
                values = values.to(torch.float64)
                total += count * values
                square += count * values**2
            else:
                final = _evolve(state, noisy, weights)
                for _ in range(count):
                    values = _sample_with_readout(final, wires, per, noise.readout, generator)
                    values = values.to(torch.float64)
                    total += values
                    square += values**2
        mean = total / t
        variance = (square / t - mean**2).clamp(min=0) * (t / max(t - 1, 1))
        stderr = (variance / t).sqrt()
        dtype = state.real.dtype
        return NoisyExpectation(mean.to(dtype), stderr.to(dtype), t, len(patterns),
                                "trajectories")


def noisy_encoded_expval_z(
    features: torch.Tensor, n_qubits: int, ops: Sequence[Op], weights: torch.Tensor,
    wires: Sequence[int], noise: NoiseModel, **kwargs,
) -> NoisyExpectation:
    """:func:`noisy_expval_z` of the amplitude-encoded ``features`` ``[B, N]``."""
    with torch.no_grad():
        state = amplitude_encode(features.reshape(features.shape[0], -1), n_qubits)
    return noisy_expval_z(state, ops, weights, wires, noise, **kwargs)
