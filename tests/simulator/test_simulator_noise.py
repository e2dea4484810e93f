"""Noise: exact closed forms, and Monte-Carlo trajectories against PennyLane ``default.mixed``.

Statistical tolerance: a trajectory estimate is the mean of T per-trajectory values; its
standard error σ is estimated from their spread (``NoisyExpectation.stderr``). Each check
allows |estimate − exact| ≤ 5σ (+1e−9): a correct estimator fails one value with
probability ≈ 6e−7; the seeds are fixed, so the tests are deterministic.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from qhead.errors import ConfigError
from qhead.quantum import build_ansatz
from qhead.simulator import amplitude_encode, run_circuit
from qhead.simulator.noise import NoiseModel, noisy_expval_z, sample_insertions

N = 3


def _circuit(name: str, layers: int = 1, **options):
    ansatz = build_ansatz(name, **options)
    ops = ansatz.ops(layers, N)
    weights = torch.rand(ansatz.shape(layers, N), generator=torch.Generator().manual_seed(3),
                         dtype=torch.float64) * 2 * math.pi
    return ops, weights


def _states(batch: int = 3) -> torch.Tensor:
    x = torch.randn(batch, 2**N, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    x[0] = x[0].abs()  # a ReLU-like row and signed rows
    return amplitude_encode(x, N)


def _default_mixed(state, ops, weights, wires, noise: NoiseModel) -> np.ndarray:
    qml = pytest.importorskip("pennylane")
    dev = qml.device("default.mixed", wires=N)
    gates = {"H": qml.Hadamard, "X": qml.PauliX, "Z": qml.PauliZ, "RX": qml.RX,
             "RY": qml.RY, "RZ": qml.RZ, "CNOT": qml.CNOT, "CZ": qml.CZ}

    def channels(wire):
        if noise.depolarizing:
            qml.DepolarizingChannel(noise.depolarizing, wires=wire)
        if noise.bit_flip:
            qml.BitFlip(noise.bit_flip, wires=wire)
        if noise.phase_flip:
            qml.PhaseFlip(noise.phase_flip, wires=wire)

    @qml.qnode(dev)
    def circuit(psi):
        qml.StatePrep(psi, wires=range(N))
        if noise.on_prepared_state:
            for w in range(N):
                channels(w)
        for op in ops:
            args = () if op.param is None else (float(weights[op.param]),)
            gates[op.name](*args, wires=list(op.wires))
            for w in op.wires:
                channels(w)
        if noise.readout:  # a flipped Z-basis outcome = an X before measuring
            for w in wires:
                qml.BitFlip(noise.readout, wires=w)
        return [qml.expval(qml.PauliZ(w)) for w in wires]

    return np.array([[float(v) for v in circuit(psi.reshape(-1).numpy())] for psi in state])


ALL = NoiseModel(depolarizing=0.06, bit_flip=0.03, phase_flip=0.04, readout=0.05,
                 on_prepared_state=True)


def test_readout_error_scales_every_expectation_by_one_minus_two_p() -> None:
    ops, weights = _circuit("ansatz2", 2, entangler="ring")
    state, wires = _states(), [2, 0, 1]
    exact = run_circuit(state, ops, weights, wires)
    result = noisy_expval_z(state, ops, weights, wires, NoiseModel(readout=0.2))
    assert result.method == "exact" and torch.all(result.stderr == 0)
    torch.testing.assert_close(result.mean, (1 - 2 * 0.2) * exact, atol=1e-14, rtol=0)


@pytest.mark.parametrize(
    ("noise", "factor"),
    [
        (NoiseModel(depolarizing=0.3), 1 - 4 * 0.3 / 3),
        (NoiseModel(bit_flip=0.2), 1 - 2 * 0.2),
        (NoiseModel(phase_flip=0.2), 1.0),  # Z after the last gate: invisible to ⟨Z⟩
        (NoiseModel(depolarizing=0.3, readout=0.1), (1 - 0.4) * (1 - 0.2)),
    ],
)
def test_closed_forms_after_a_single_one_qubit_gate(noise: NoiseModel, factor: float) -> None:
    ops, weights = _circuit("ansatz1", 1, gate="RY")  # one RY per wire
    state = _states()
    exact = run_circuit(state, ops, weights, range(N))
    result = noisy_expval_z(state, ops, weights, range(N), noise)
    assert result.method == "exact"
    torch.testing.assert_close(result.mean, factor * exact, atol=1e-14, rtol=0)


@pytest.mark.parametrize("gate", ["RX", "RY"])
def test_exact_product_noise_equals_default_mixed(gate: str) -> None:
    ops, weights = _circuit("ansatz1", 2, gate=gate)
    state, wires = _states(), [1, 2]
    result = noisy_expval_z(state, ops, weights, wires, ALL)
    reference = _default_mixed(state, ops, weights, wires, ALL)
    np.testing.assert_allclose(result.mean.numpy(), reference, atol=1e-10)


def _within_five_sigma(result, reference: np.ndarray) -> None:
    mean, sigma = result.mean.numpy(), result.stderr.numpy()
    assert np.all(sigma > 0)
    assert np.all(np.abs(mean - reference) <= 5 * sigma + 1e-9), (mean, reference, sigma)


@pytest.mark.parametrize(
    ("name", "options"),
    [("ansatz2", {"gates": ("RZ", "RY"), "entangler": "ring"}), ("simplified-two-design", {})],
)
def test_trajectories_agree_with_default_mixed(name: str, options: dict) -> None:
    ops, weights = _circuit(name, 2, **options)
    state, wires = _states(), [0, 1, 2]
    generator = torch.Generator().manual_seed(0)
    result = noisy_expval_z(state, ops, weights, wires, ALL, trajectories=1000,
                            method="trajectories", generator=generator)
    assert result.method == "trajectories" and result.trajectories == 1000
    assert 1 < result.distinct_circuits <= 1000
    _within_five_sigma(result, _default_mixed(state, ops, weights, wires, ALL))
    # σ is the spread of the per-trajectory values over √T: it shrinks like 1/√T
    small = noisy_expval_z(state, ops, weights, wires, ALL, trajectories=100,
                           method="trajectories", generator=torch.Generator().manual_seed(1))
    ratio = float(small.stderr.mean() / result.stderr.mean())
    assert 2.0 < ratio < 4.5  # √10 ≈ 3.16


def test_trajectories_with_shots_agree_with_default_mixed() -> None:
    ops, weights = _circuit("simplified-two-design", 1)  # CZ and RY, evolved gate by gate
    state, wires = _states(), [0, 2]
    result = noisy_expval_z(state, ops, weights, wires, ALL, trajectories=200, shots=20000,
                            generator=torch.Generator().manual_seed(5))
    assert result.trajectories == 200
    _within_five_sigma(result, _default_mixed(state, ops, weights, wires, ALL))


def test_insertion_statistics_follow_the_probabilities() -> None:
    ops, _ = _circuit("ansatz1", 1)
    noise = NoiseModel(depolarizing=0.3)
    patterns = sample_insertions(ops, N, noise, 4000, torch.Generator().manual_seed(2))
    clean = patterns[tuple(ops)]
    expected = 4000 * (1 - 0.3) ** N
    assert abs(clean - expected) < 5 * math.sqrt(expected * (1 - 0.7**N))


def test_bad_noise_settings_are_refused() -> None:
    ops, weights = _circuit("ansatz2", 1)
    state = _states()
    with pytest.raises(ConfigError, match=r"noise\.depolarizing must be a probability"):
        NoiseModel(depolarizing=1.5)
    with pytest.raises(ConfigError, match=r"noise\.readout"):
        NoiseModel(readout=-0.1)
    with pytest.raises(ConfigError, match="one-qubit gates"):
        noisy_expval_z(state, ops, weights, [0], ALL, method="exact")
    with pytest.raises(ConfigError, match="multiple of trajectories"):
        noisy_expval_z(state, ops, weights, [0], ALL, trajectories=30, shots=100)
    with pytest.raises(ConfigError, match="trajectories must be a positive integer"):
        noisy_expval_z(state, ops, weights, [0], ALL, trajectories=0)
