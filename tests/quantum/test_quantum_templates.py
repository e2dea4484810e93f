"""The PennyLane templates as qhead ansätze, against PennyLane's OWN templates
(``qml.BasicEntanglerLayers``, ``qml.StronglyEntanglingLayers``, ``qml.SimplifiedTwoDesign``
on default.qubit), outputs and gradients, on every simulator implementation."""

import warnings

import pytest
import torch

from qhead.quantum import AEVQC, CircuitLintWarning, build_ansatz, lint_circuit
from qhead.simulator import kernels

qml = pytest.importorskip("pennylane")

TEMPLATES = ["basic-entangler", "strongly-entangling", "simplified-two-design"]
SIMULATORS = ["torch", "torch-plan"] + (["cpu-kernels"] if kernels.available() else [])


@pytest.fixture(autouse=True)
def _quiet_lint():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CircuitLintWarning)
        yield


def pennylane_reference(name, options, features, weights, layers, n, wires):
    """PennyLane's own template on default.qubit (backprop, broadcast batch): [B, m]."""
    ansatz = build_ansatz(name, **options)
    dev = qml.device("default.qubit", wires=n)

    @qml.qnode(dev, interface="torch", diff_method="backprop")
    def circuit(x, w):
        qml.AmplitudeEmbedding(x, wires=range(n), pad_with=0.0, normalize=True)
        if name == "basic-entangler":
            qml.BasicEntanglerLayers(
                w, wires=range(n), rotation=getattr(qml, options.get("rotation", "RX"))
            )
        elif name == "strongly-entangling":
            qml.StronglyEntanglingLayers(w, wires=range(n), ranges=options.get("ranges"))
        else:
            parts = ansatz.split_weights(w, layers, n)
            qml.SimplifiedTwoDesign(parts["initial_layer_weights"], parts["weights"],
                                    wires=range(n))
        return [qml.expval(qml.PauliZ(k)) for k in wires]

    out = circuit(features, weights)
    return torch.stack(list(out), dim=-1).reshape(features.shape[0], len(wires))


CASES = [
    ("basic-entangler", {}, 1, 2, None),
    ("basic-entangler", {}, 3, 4, [0, 2]),
    ("basic-entangler", {"rotation": "RY"}, 2, 5, None),
    ("basic-entangler", {"rotation": "RZ"}, 2, 3, [1]),
    ("strongly-entangling", {}, 1, 3, None),
    ("strongly-entangling", {}, 3, 4, [3, 1]),
    ("strongly-entangling", {}, 5, 5, None),
    ("strongly-entangling", {"ranges": [2, 1]}, 2, 5, [0]),
    ("simplified-two-design", {}, 1, 3, None),
    ("simplified-two-design", {}, 2, 4, [1, 2]),
    ("simplified-two-design", {}, 3, 5, None),
]


@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize(("name", "options", "layers", "n", "wires"), CASES)
def test_outputs_and_gradients_match_pennylane_templates(
    simulator, name, options, layers, n, wires
):
    torch.manual_seed(layers * 10 + n)
    head = AEVQC(2**n - 1, ansatz=name, layers=layers, measured_wires=wires,
                 simulator=simulator, **options).double()
    x = torch.randn(3, 2**n - 1, dtype=torch.float64)
    upstream = torch.randn(3, head.out_features, dtype=torch.float64)

    xq = x.clone().requires_grad_()
    ours = head(xq)
    (ours * upstream).sum().backward()

    xp = x.clone().requires_grad_()
    wp = head.weights.detach().clone().requires_grad_()
    theirs = pennylane_reference(name, options, xp, wp, layers, n, head.measured_wires)
    (theirs * upstream).sum().backward()

    torch.testing.assert_close(ours, theirs.to(ours.dtype), atol=1e-10, rtol=0)
    torch.testing.assert_close(xq.grad, xp.grad, atol=1e-10, rtol=1e-7)
    torch.testing.assert_close(head.weights.grad, wp.grad, atol=1e-10, rtol=1e-7)


@pytest.mark.parametrize("name", TEMPLATES)
def test_weight_shapes_are_pennylanes(name):
    ansatz = build_ansatz(name)
    for layers, n in [(1, 2), (3, 4), (5, 15)]:
        parts = ansatz.weight_parts(layers, n)
        cls = {"basic-entangler": qml.BasicEntanglerLayers,
               "strongly-entangling": qml.StronglyEntanglingLayers,
               "simplified-two-design": qml.SimplifiedTwoDesign}[name]
        expected = cls.shape(layers, n)
        expected = [tuple(expected)] if isinstance(expected[0], int) else [
            tuple(s) for s in expected]
        assert [tuple(s) for s in parts.values()] == expected
        w = torch.arange(float(ansatz.num_params(layers, n))).reshape(ansatz.shape(layers, n))
        split = ansatz.split_weights(w, layers, n)
        assert [tuple(t.shape) for t in split.values()] == expected
        assert torch.cat([t.reshape(-1) for t in split.values()]).equal(w.reshape(-1))


@pytest.mark.parametrize(("name", "layers", "n", "wires"), [
    ("strongly-entangling", 2, 4, [0, 1, 2, 3]),
    ("strongly-entangling", 1, 4, [0]),
    ("basic-entangler", 1, 4, [0]),
    ("simplified-two-design", 2, 5, [0]),
    ("simplified-two-design", 1, 4, [3]),
])
def test_lint_findings_are_zero_gradients_in_pennylane(name, layers, n, wires):
    """Soundness on the templates: every angle the linter calls dead has a zero gradient
    in PennyLane's own template, for random inputs."""
    findings = lint_circuit(name, layers, n, wires)
    dead = {p for f in findings if f.kind == "dead-parameter" for p in f.params}
    ansatz = build_ansatz(name)
    torch.manual_seed(0)
    w = (torch.rand(ansatz.shape(layers, n), dtype=torch.float64) * 6).requires_grad_()
    x = torch.randn(4, 2**n, dtype=torch.float64)
    out = pennylane_reference(name, {}, x, w, layers, n, wires)
    (out * torch.randn_like(out)).sum().backward()
    for p in dead:
        assert abs(float(w.grad[p])) < 1e-12, p
    if name == "strongly-entangling":
        # Rot's last RZ in the last layer only changes phases before the CNOTs and Z.
        assert {(layers - 1, q, 2) for q in range(n)} <= dead
    live = [p for p in torch.cartesian_prod(*[torch.arange(s) for s in w.shape]).tolist()
            if tuple(p) not in dead] if w.dim() > 1 else []
    assert any(abs(float(w.grad[tuple(p)])) > 1e-6 for p in live) or w.dim() == 1


def test_strongly_entangling_rejects_bad_ranges():
    from qhead.errors import ConfigError

    with pytest.raises(ConfigError, match="ranges"):
        AEVQC(16, ansatz="strongly-entangling", layers=2, ranges=[1])
    with pytest.raises(ConfigError, match="multiple of n_wires"):
        AEVQC(16, ansatz="strongly-entangling", layers=1, ranges=[4])
