import warnings

import numpy as np
import pytest
import torch

from qhead.quantum import AEVQC, CircuitLintWarning, build_ansatz, lint_circuit
from qhead.simulator import amplitude_encode, run_circuit


def dead_params(findings):
    return {p for f in findings if f.kind == "dead-parameter" for p in f.params}


def test_ansatz2_rz_before_cnots_is_dead_at_d1():
    findings = lint_circuit("ansatz2", 1, 4)
    assert dead_params(findings) == {(0, 1, q) for q in range(4)}
    assert "only changes phases" in str(findings[0])


def test_ansatz2_d2_only_the_last_layers_rz_is_dead():
    assert dead_params(lint_circuit("ansatz2", 2, 4)) == {(1, 1, q) for q in range(4)}


def test_ansatz1_redundant_layers_and_light_cone():
    findings = lint_circuit("ansatz1", 3, 5, measured_wires=[0, 1, 2])
    assert dead_params(findings) == {(d, q) for d in range(3) for q in (3, 4)}
    redundant = [f for f in findings if f.kind == "redundant-rotation"]
    assert {p for f in redundant for p in f.params} == {(d, q) for d in (1, 2) for q in range(3)}
    assert "RY(a)·RY(b) = RY(a+b)" in redundant[0].message
    assert lint_circuit("ansatz1", 1, 5) == []


def test_ansatz1_rz_is_entirely_dead():
    assert dead_params(lint_circuit(build_ansatz("ansatz1", gate="RZ"), 1, 3)) == {
        (0, q) for q in range(3)
    }


CASES = [
    ("ansatz2", 1, {}, None),
    ("ansatz2", 2, {}, [0, 2]),
    ("ansatz2", 1, {"entangler": "ring"}, None),
    ("ansatz2", 2, {"gates": ("RZ", "RY")}, [1]),
    ("ansatz2", 1, {"gates": ("RX", "RZ")}, [3]),
    ("ansatz1", 2, {"gate": "RX"}, [0, 1]),
    ("ansatz1", 1, {"gate": "RZ"}, None),
]


@pytest.mark.parametrize(("name", "layers", "options", "wires"), CASES)
def test_flagged_parameters_have_exactly_zero_gradient_and_others_do_not(
    name, layers, options, wires
):
    n = 4
    ansatz = build_ansatz(name, **options)
    measured = list(range(n)) if wires is None else wires
    flagged = dead_params(lint_circuit(ansatz, layers, n, measured))
    torch.manual_seed(0)
    x = torch.randn(6, 16, dtype=torch.float64)
    weights = (torch.rand(ansatz.shape(layers, n), dtype=torch.float64) * 6.3).requires_grad_(True)
    # Gate-by-gate path: nothing is skipped, so zeros are computed, not assumed.
    out = run_circuit(amplitude_encode(x), ansatz.ops(layers, n), weights, measured, optimize=False)
    (grad,) = torch.autograd.grad((out * torch.randn_like(out)).sum(), weights)
    for index in np.ndindex(*grad.shape):
        if index in flagged:
            assert abs(float(grad[index])) < 1e-12, index
        else:
            assert abs(float(grad[index])) > 1e-8, index


def test_pennylane_confirms_dead_rz_gradients():
    pytest.importorskip("pennylane")
    torch.manual_seed(1)
    with pytest.warns(CircuitLintWarning):
        layer = AEVQC(16, "ansatz2", 1, backend="pennylane").double()
    x = torch.randn(3, 16, dtype=torch.float64)
    layer(x).sum().backward()
    assert torch.all(layer.weights.grad[0, 1].abs() < 1e-12)  # zero up to rounding
    assert torch.all(layer.weights.grad[0, 0].abs() > 1e-8)


def test_aevqc_warns_once_at_construction():
    with pytest.warns(CircuitLintWarning, match="dead parameters: RZ") as record:
        layer = AEVQC(16, "ansatz2", 1)
    assert len(record) == 1
    assert len(layer.lint) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer(torch.randn(2, 16))  # no warning at run time
        AEVQC(16, "ansatz1", 1)  # a clean circuit warns nothing
    with pytest.warns(CircuitLintWarning, match="redundant rotations"):
        AEVQC(16, "ansatz1", 3)
