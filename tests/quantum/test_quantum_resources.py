"""State preparation (Möttönen cascade) and device resources, checked against an
independent state-vector simulation and against PennyLane's decomposition via ``qml.specs``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from qhead.cli import main
from qhead.errors import ConfigError
from qhead.quantum import build_ansatz
from qhead.quantum.resources import DeviceAssumptions, circuit_counts, head_resources
from qhead.quantum.stateprep import (
    mottonen_counts,
    mottonen_gates,
    pennylane_mottonen_counts,
)


def simulate(gates, n: int) -> np.ndarray:
    """Dense numpy state-vector simulation of RY/CNOT gates from |0…0⟩ (wire 0 = MSB)."""
    state = np.zeros(2**n)
    state[0] = 1.0
    for gate in gates:
        full = np.eye(1)
        if gate.name == "RY":
            c, s = math.cos(gate.angle / 2), math.sin(gate.angle / 2)
            for w in range(n):
                full = np.kron(full, np.array([[c, -s], [s, c]]) if w == gate.wires[0]
                               else np.eye(2))
        else:
            control, target = gate.wires
            full = np.zeros((2**n, 2**n))
            for i in range(2**n):
                bit = (i >> (n - 1 - control)) & 1
                full[i ^ (bit << (n - 1 - target)), i] = 1
        state = full @ state
    return state


def _state(n: int, kind: str, rng) -> np.ndarray:
    x = rng.random(2**n) + 0.05
    if kind != "positive":
        x *= rng.choice([-1.0, 1.0], size=2**n)
        x[0], x[-1] = abs(x[0]), -abs(x[-1])  # both signs present
    if kind == "sparse":  # a ReLU map: many exact zeros, including whole blocks
        x[: 2 ** (n - 1) // 2] = 0
        x[rng.random(2**n) < 0.4] = 0
        x[-1] = 0.7
    return x / np.linalg.norm(x)


@pytest.mark.parametrize("kind", ["positive", "signed", "sparse"])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6])
def test_mottonen_gates_prepare_the_state(n: int, kind: str) -> None:
    rng = np.random.default_rng(10 * n + len(kind))
    x = _state(n, kind, rng)
    gates = mottonen_gates(3.0 * x)  # any scale: it normalises
    np.testing.assert_allclose(simulate(gates, n), x, atol=1e-12)
    counts = circuit_counts(gates, n)
    closed = mottonen_counts(n)
    assert counts.gates.get("RY", 0) == closed["RY"] == 2**n - 1
    assert counts.gates.get("CNOT", 0) == closed["CNOT"] == 2**n - 2
    assert counts.depth == closed["depth"] == 2 ** (n + 1) - n - 2


def test_mottonen_gates_refuse_what_they_cannot_prepare() -> None:
    with pytest.raises(ValueError, match="length 2"):
        mottonen_gates(np.ones(3))
    with pytest.raises(ValueError, match="zero vector"):
        mottonen_gates(np.zeros(4))
    with pytest.raises(ValueError, match="real"):
        mottonen_gates(np.ones(4) * 1j)
    with pytest.raises(ValueError, match="finite"):
        mottonen_gates(np.array([1.0, np.nan]))


def _pennylane_specs(n: int, x: np.ndarray):
    qml = pytest.importorskip("pennylane")
    dev = qml.device("default.qubit", wires=n)

    @qml.qnode(dev)
    def circuit(state):
        qml.MottonenStatePreparation(state, wires=range(n))
        return qml.state()

    specs = qml.specs(circuit, level="device")(x)
    resources = specs["resources"] if isinstance(specs, dict) else specs.resources
    return dict(resources.gate_types), resources.depth


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6])
def test_counts_agree_with_pennylanes_decomposition(n: int) -> None:
    rng = np.random.default_rng(n)
    gates, depth = _pennylane_specs(n, _state(n, "positive", rng))
    closed = mottonen_counts(n)
    assert gates.get("RY", 0) == closed["RY"] and gates.get("CNOT", 0) == closed["CNOT"]
    assert set(gates) <= {"RY", "CNOT"} and depth == closed["depth"]
    # signs are phases π to PennyLane: an RZ cascade doubles the CNOTs
    gates, _ = _pennylane_specs(n, _state(n, "signed", rng))
    bound = pennylane_mottonen_counts(n)
    assert gates.get("CNOT", 0) == bound["CNOT"] == 2 ** (n + 1) - 4
    assert gates["RY"] == bound["RY"] and 0 < gates["RZ"] <= bound["RZ"]


@pytest.mark.parametrize(
    ("name", "options", "layers"),
    [("ansatz1", {}, 2), ("ansatz2", {}, 1), ("ansatz2", {"entangler": "ring"}, 2)],
)
def test_ansatz_counts_agree_with_qml_specs(name: str, options: dict, layers: int) -> None:
    qml = pytest.importorskip("pennylane")
    n = 4
    ansatz = build_ansatz(name, **options)
    ops = ansatz.ops(layers, n)
    weights = np.random.default_rng(0).random(ansatz.shape(layers, n))
    kinds = {"H": qml.Hadamard, "RY": qml.RY, "RZ": qml.RZ, "RX": qml.RX, "CNOT": qml.CNOT}

    @qml.qnode(qml.device("default.qubit", wires=n))
    def circuit():
        for op in ops:
            args = () if op.param is None else (weights[op.param],)
            kinds[op.name](*args, wires=list(op.wires))
        return qml.state()

    specs = qml.specs(circuit)()
    resources = specs["resources"] if isinstance(specs, dict) else specs.resources
    counts = circuit_counts(ops, n)
    names = {"Hadamard": "H"}
    assert counts.gates == {names.get(k, k): v for k, v in resources.gate_types.items()}
    assert counts.depth == resources.depth


def test_training_cost_is_parameter_shift_arithmetic() -> None:
    n, p = 4, 8
    ops = build_ansatz("ansatz2").ops(1, n)
    res = head_resources(ops, n, range(n), 12, p, shots=(10, 1000), train_images=100,
                         batch_size=32, epochs=3, training_shots=50,
                         assumptions=DeviceAssumptions(shots_per_second=1000,
                                                       circuit_overhead_ms=10))
    tr = res.training
    assert tr["steps_per_epoch"] == 4  # ceil(100 / 32)
    assert tr["circuits_per_step_weights_only"] == 32 * (1 + 2 * p)
    assert tr["circuits_per_image_feature_gradient"] == 2 * (2**n - 1)
    assert tr["per_epoch"]["end_to_end_circuits"] == 100 * (1 + 2 * p + 2 * (2**n - 1))
    # each circuit: 10 ms overhead + 50 shots at 1000 shots/s
    assert tr["seconds_per_epoch_weights_only"] == pytest.approx(100 * (1 + 2 * p) * 0.06)
    assert tr["seconds_end_to_end"] == pytest.approx(3 * tr["seconds_per_epoch_end_to_end"])
    assert [r["executions_per_image"] for r in res.shots] == [10, 1000]
    assert res.shots[1]["z_standard_error_max"] == pytest.approx(1 / math.sqrt(1000))
    prep, full = res.state_preparation, res.full_circuit
    assert full["two_qubit"] == prep["two_qubit"] + n - 1
    assert full["estimated_fidelity"] == pytest.approx(
        0.999 ** full["two_qubit"] * 0.9999 ** (full["total"] - full["two_qubit"]))
    with pytest.raises(ConfigError, match="shots_per_second"):
        DeviceAssumptions(shots_per_second=0)
    with pytest.raises(ConfigError, match="batch_size"):
        head_resources(ops, n, range(n), 12, p, batch_size=0)


def test_large_circuits_use_the_closed_forms() -> None:
    n = 17  # above COUNTED_MAX_QUBITS: not built, the closed forms tested above for n ≤ 6
    ops = build_ansatz("ansatz2").ops(1, n)
    res = head_resources(ops, n, range(n), 2**n, 2 * n)
    prep, full = res.state_preparation, res.full_circuit
    assert prep["counted_from_decomposition"] is False
    assert (prep["two_qubit"], prep["depth"]) == (2**n - 2, 2 ** (n + 1) - n - 2)
    assert full["two_qubit"] == 2**n - 2 + n - 1
    assert full["gates"]["RY"] == 2**n - 1 + n and res.ansatz["depth"] == n + 2  # H, RY, RZ, chain
    assert full["depth"] == prep["depth"] + res.ansatz["depth"]  # an upper bound, stated


TINY = ["model.backbone=small_cnn", "model.backbone_options.channels=[4,8,8]", "image_size=16"]


def test_cli_resources_for_a_model_on_the_command_line(capsys) -> None:
    assert main(["resources", *TINY, "model.head=quantum", "--json", "--shots", "10,100"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_qubits"] == 5 and out["n_features"] == 32  # 8x2x2 map
    assert out["state_preparation"]["two_qubit"] == 2**5 - 2
    assert out["model"]["features_observed_nonnegative"] is True  # small_cnn ends in a ReLU
    assert [r["shots"] for r in out["shots"]] == [10, 100]
    assert main(["resources", *TINY, "model.head=quantum"]) == 0
    printed = capsys.readouterr().out
    assert ("| state preparation (qhead, Möttönen RY cascade; counted from the built "
            "decomposition) | CNOT 30, RY 31 | 30 | 57 |") in printed


def test_cli_resources_errors(capsys) -> None:
    assert main(["resources", *TINY, "model.head=classical"]) == 1
    assert "has no quantum circuit" in capsys.readouterr().err
    assert main(["resources", *TINY, "model.head=quantum", "--shots", "exact"]) == 1
    assert "not available on a device" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_resources_for_the_paper_busi_head(capsys) -> None:
    assert main(["resources", "--preset", "resnet18_q/busi", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_qubits"] == 15 and out["n_features"] == 512 * 7 * 7
    assert out["model"]["features_observed_nonnegative"] is True  # ResNet-18 ends in a ReLU
    assert out["state_preparation"]["two_qubit"] == 32_766
    assert out["training"]["steps_per_epoch"] == 20 and out["trainable_angles"] == 15
