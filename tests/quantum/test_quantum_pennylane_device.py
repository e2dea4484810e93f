"""qhead as a PennyLane device ("qhead.qubit"), through PennyLane's own TorchLayer and
QNodes, against default.qubit: outputs, gradients (weights and embedded features) and
the refusal of what it does not run."""

import importlib.metadata

import pytest
import torch

qml = pytest.importorskip("pennylane")

from pennylane.exceptions import DeviceError  # noqa: E402

from qhead.quantum.pennylane_device import QheadQubit  # noqa: E402
from qhead.simulator import kernels  # noqa: E402

SIMULATORS = ["torch-plan"] + (["cpu-kernels"] if kernels.available() else [])


def _layer(device, n, template, weight_shape, wires, seed=0):
    @qml.qnode(device, interface="torch")
    def circuit(inputs, weights):
        qml.AmplitudeEmbedding(inputs, wires=range(n), pad_with=0.0, normalize=True)
        template(weights, wires=range(n))
        return [qml.expval(qml.PauliZ(w)) for w in wires]

    torch.manual_seed(seed)
    return qml.qnn.TorchLayer(circuit, {"weights": weight_shape})


TEMPLATES = [
    (qml.StronglyEntanglingLayers, lambda d, n: (d, n, 3)),
    (qml.BasicEntanglerLayers, lambda d, n: (d, n)),
]


@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize(("template", "shape"), TEMPLATES)
@pytest.mark.parametrize(("n", "layers", "wires"), [(3, 1, [0, 1, 2]), (5, 3, [4, 0])])
def test_torch_layer_matches_default_qubit(simulator, template, shape, n, layers, wires):
    ours = _layer(QheadQubit(wires=n, simulator=simulator), n, template, shape(layers, n), wires)
    theirs = _layer(qml.device("default.qubit", wires=n), n, template, shape(layers, n), wires)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(4, 2**n - 2, dtype=torch.float32)
    xq, xp = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_q, out_p = ours(xq), theirs(xp)
    assert out_q.shape == out_p.shape == (4, len(wires))
    torch.testing.assert_close(out_q, out_p, atol=2e-6, rtol=0)
    upstream = torch.randn_like(out_q)
    (out_q * upstream).sum().backward()
    (out_p * upstream).sum().backward()
    torch.testing.assert_close(xq.grad, xp.grad, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(ours.weights.grad, theirs.weights.grad, atol=2e-5, rtol=1e-4)


def test_float64_unbatched_state_prep_and_every_native_gate():
    n = 3

    def make(device):
        @qml.qnode(device, interface="torch", diff_method="backprop")
        def circuit(state, w):
            qml.StatePrep(state, wires=range(n), normalize=True)
            qml.Hadamard(0)
            qml.PauliX(1)
            qml.RX(w[0], wires=2)
            qml.CZ(wires=[2, 0])
            qml.Rot(w[1], w[2], w[3], wires=1)
            qml.PauliZ(0)
            qml.CNOT(wires=[1, 2])
            qml.RY(w[4], wires=0)
            qml.RZ(w[5], wires=1)
            qml.CNOT(wires=[0, 1])
            return qml.expval(qml.PauliZ(1)), qml.expval(qml.PauliZ(0))

        return circuit

    state0 = torch.randn(2**n, dtype=torch.float64)
    w0 = torch.rand(6, dtype=torch.float64) * 6
    grads = []
    for device in (QheadQubit(wires=n), qml.device("default.qubit", wires=n)):
        state, w = state0.clone().requires_grad_(), w0.clone().requires_grad_()
        out = make(device)(state, w)
        (out[0] - 2 * out[1]).backward()
        grads.append((torch.stack(out), state.grad, w.grad))
    for ours, theirs in zip(grads[0], grads[1], strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-10, rtol=1e-8)


class _Recording(QheadQubit):
    """QheadQubit that records the operation names of the tapes it runs."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen: list[list[str]] = []

    def _run(self, tape):
        self.seen.append([op.name for op in tape.operations])
        return super()._run(tape)


# (template call on 4 wires given its weights, the weights' shapes, whether qhead runs it
# whole or PennyLane decomposes it first)
TEMPLATE_VARIANTS = [
    (lambda w, wires: qml.StronglyEntanglingLayers(w[0], wires=wires), [(2, 4, 3)], True),
    (lambda w, wires: qml.StronglyEntanglingLayers(w[0], wires=wires, ranges=[3, 2]),
     [(2, 4, 3)], True),
    (lambda w, wires: qml.StronglyEntanglingLayers(w[0], wires=wires, imprimitive=qml.CZ),
     [(2, 4, 3)], False),
    (lambda w, wires: qml.BasicEntanglerLayers(w[0], wires=wires), [(3, 4)], True),
    (lambda w, wires: qml.BasicEntanglerLayers(w[0], wires=wires, rotation=qml.RY),
     [(2, 4)], True),
    (lambda w, wires: qml.BasicEntanglerLayers(w[0], wires=wires, rotation=qml.PhaseShift),
     [(2, 4)], False),
    (lambda w, wires: qml.SimplifiedTwoDesign(w[0], w[1], wires=wires), [(4,), (2, 3, 2)],
     True),
]


@pytest.mark.parametrize(("template", "shapes", "whole"), TEMPLATE_VARIANTS)
def test_templates_run_whole_or_decomposed_match_default_qubit(template, shapes, whole):
    # The template sits on a permutation of the device's wires between gates with angles
    # of their own, so that its wire map and its place in the flat weight vector count.
    n, wires = 5, [3, 0, 4, 1]

    def make(device):
        @qml.qnode(device, interface="torch", diff_method="backprop")
        def circuit(state, angles, *weights):
            qml.StatePrep(state, wires=range(n), normalize=True)
            qml.RY(angles[0], wires=2)
            template(weights, wires)
            qml.RX(angles[1], wires=3)
            qml.CNOT(wires=[2, 1])
            return [qml.expval(qml.PauliZ(w)) for w in range(n)]

        return circuit

    g = torch.Generator().manual_seed(len(shapes) + sum(map(len, shapes)))
    state0 = torch.randn(2**n, generator=g, dtype=torch.float64)
    angles0 = torch.rand(2, generator=g, dtype=torch.float64) * 6
    weights0 = [torch.rand(shape, generator=g, dtype=torch.float64) * 6 for shape in shapes]
    upstream = torch.randn(n, generator=g, dtype=torch.float64)
    ours = _Recording(wires=n)
    results = []
    for device in (ours, qml.device("default.qubit", wires=n)):
        leaves = [t.clone().requires_grad_() for t in (state0, angles0, *weights0)]
        out = torch.stack(make(device)(*leaves))
        (out * upstream).sum().backward()
        results.append([out.detach()] + [leaf.grad for leaf in leaves])
    for mine, theirs in zip(*results, strict=True):
        torch.testing.assert_close(mine, theirs, atol=1e-10, rtol=1e-8)
    template_name = template(weights0, wires).name
    assert (template_name in ours.seen[0]) is whole


def test_no_state_preparation_starts_in_zero():
    @qml.qnode(QheadQubit(wires=2), interface="torch")
    def circuit(t):
        qml.RY(t, wires=0)
        qml.CNOT(wires=[0, 1])
        return qml.expval(qml.PauliZ(1))

    t = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    out = circuit(t)
    out.backward()
    torch.testing.assert_close(out, torch.cos(t.detach()))
    torch.testing.assert_close(t.grad, -torch.sin(t.detach()))


@pytest.mark.parametrize(("body", "message"), [
    (lambda: qml.expval(qml.PauliX(0)), "expval\\(PauliZ"),
    (lambda: qml.probs(wires=[0]), "expval\\(PauliZ"),
    (lambda: (qml.AmplitudeDamping(0.1, wires=0), qml.expval(qml.PauliZ(0)))[1],
     "AmplitudeDamping"),
    (lambda: (qml.StatePrep(torch.tensor([1, 1j, 0, 0]) / 2**0.5, wires=[0, 1]),
              qml.expval(qml.PauliZ(0)))[1], "state preparation only as the first"),
])
def test_unsupported_operations_are_refused_by_name(body, message):
    @qml.qnode(QheadQubit(wires=2), interface="torch")
    def circuit():
        qml.Hadamard(0)
        return body()

    with pytest.raises(DeviceError, match=message):
        circuit()


def test_complex_states_are_refused():
    @qml.qnode(QheadQubit(wires=1), interface="torch")
    def circuit():
        qml.StatePrep(torch.tensor([1, 1j]) / 2**0.5, wires=[0])
        return qml.expval(qml.PauliZ(0))

    with pytest.raises(DeviceError, match="complex state vector"):
        circuit()


def test_shots_are_refused():
    with pytest.raises(DeviceError, match="exact expectations only"):
        QheadQubit(wires=2, shots=100)


def test_the_entry_point_registers_the_device():
    declared = {e.name for e in importlib.metadata.entry_points(group="pennylane.plugins")}
    if "qhead.qubit" not in declared:
        pytest.skip("qhead's metadata predates the entry point: pip install -e . registers it")
    dev = qml.device("qhead.qubit", wires=3)
    assert isinstance(dev, QheadQubit)
