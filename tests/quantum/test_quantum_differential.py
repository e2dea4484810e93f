"""AEVQC (torch backend) against circuits written directly in PennyLane (default.qubit).

The reference circuits below are built from PennyLane's own gates, not from qhead's
gate lists, so a mistake in an ansatz definition or a convention shows up here.
"""

import itertools
import warnings

import pytest
import torch

from qhead.quantum import AEVQC, CircuitLintWarning
from qhead.simulator import amplitude_encode, kernels, run_circuit

qml = pytest.importorskip("pennylane")


@pytest.fixture(autouse=True)
def _quiet_lint():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CircuitLintWarning)
        yield


@pytest.fixture(params=["cpu-kernels", "torch-only"])
def cpu_path(request):
    """Runs a test with the compiled CPU kernels (the default where they apply) and
    with the pure-torch simulator, so that both are checked against PennyLane."""
    if request.param == "cpu-kernels" and not kernels.available():
        pytest.skip("numba is not installed")
    previous = kernels.set_enabled(request.param == "cpu-kernels")
    yield request.param
    kernels.set_enabled(previous)


def reference(x, weights, name, layers, n, wires, options):
    """PennyLane default.qubit, backprop, broadcast over the batch: [B, m]."""
    dev = qml.device("default.qubit", wires=n)

    @qml.qnode(dev, interface="torch", diff_method="backprop")
    def circuit(features, w):
        qml.AmplitudeEmbedding(features, wires=range(n), pad_with=0.0, normalize=True)
        if name == "ansatz1":
            gate = getattr(qml, options.get("gate", "RY"))
            for d in range(layers):
                for q in range(n):
                    gate(w[d, q], wires=q)
        else:
            for q in range(n):
                qml.Hadamard(wires=q)
            gates = options.get("gates", ("RY", "RZ"))
            ring = options.get("entangler", "chain") == "ring"
            for d in range(layers):
                for i, g in enumerate(gates):
                    for q in range(n):
                        getattr(qml, g)(w[d, i, q], wires=q)
                for q in range(n - 1):
                    qml.CNOT(wires=[q, q + 1])
                if ring and n >= 3:
                    qml.CNOT(wires=[n - 1, 0])
        return [qml.expval(qml.PauliZ(k)) for k in wires]

    out = circuit(x, weights)
    return torch.stack(list(out), dim=-1).reshape(x.shape[0], len(wires))


ANSATZ_OPTIONS = [
    ("ansatz1", {}),
    ("ansatz1", {"gate": "RX"}),
    ("ansatz1", {"gate": "RZ"}),
    ("ansatz2", {}),
    ("ansatz2", {"gates": ("RZ", "RY")}),
    ("ansatz2", {"entangler": "ring"}),
    ("ansatz2", {"gates": ("RX", "RY"), "entangler": "ring"}),
    ("ansatz2", {"gates": ("RX", "RZ")}),
    ("ansatz2", {"gates": ("RY", "RY")}),
]


def make(name, layers, n_features, measured, options, dtype, seed):
    torch.manual_seed(seed)
    layer = AEVQC(n_features, name, layers, measured_wires=measured, **options).to(dtype)
    x = torch.randn(4, n_features, dtype=dtype)
    return layer, x


def compare(name, options, layers, n_features, measured, dtype, seed, atol, grads=True):
    layer, x = make(name, layers, n_features, measured, options, dtype, seed)
    x.requires_grad_(True)
    ours = layer(x)
    w64 = layer.weights.detach().double().requires_grad_(True)
    x64 = x.detach().double().requires_grad_(True)
    theirs = reference(x64, w64, name, layers, layer.n_qubits, layer.measured_wires, options)
    torch.testing.assert_close(ours.double(), theirs, atol=atol, rtol=0)
    if grads:
        cotangent = torch.randn_like(theirs)
        g_ours = torch.autograd.grad((ours * cotangent.to(dtype)).sum(), (x, layer.weights))
        g_theirs = torch.autograd.grad((theirs * cotangent).sum(), (x64, w64))
        for a, b in zip(g_ours, g_theirs, strict=True):
            torch.testing.assert_close(a.double(), b, atol=atol * 10, rtol=0)


@pytest.mark.parametrize(("name", "options"), ANSATZ_OPTIONS)
@pytest.mark.parametrize(
    ("layers", "n_features", "measured"), [(1, 5, None), (2, 16, 2), (3, 2, None)]
)
def test_matches_pennylane_float64(name, options, layers, n_features, measured, cpu_path):
    compare(name, options, layers, n_features, measured, torch.float64, 0, atol=1e-10)


@pytest.mark.parametrize(("name", "options"), ANSATZ_OPTIONS[::2])
@pytest.mark.parametrize(("layers", "n_features", "measured"), [(1, 60, [5, 0, 3]), (2, 1, None)])
def test_matches_pennylane_float32(name, options, layers, n_features, measured, cpu_path):
    compare(name, options, layers, n_features, measured, torch.float32, 1, atol=1e-5)


@pytest.mark.parametrize(("name", "layers"), [("ansatz1", 1), ("ansatz2", 1)])
def test_matches_pennylane_at_the_paper_size(name, layers, cpu_path):
    # 25088 features → 15 qubits, as for ResNet-18 / MaxViT-T feature maps.
    compare(name, {}, layers, 25088, None, torch.float32, 2, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("n", range(1, 16))
@pytest.mark.parametrize(("name", "options"), ANSATZ_OPTIONS)
def test_sweep_all_sizes(n, name, options):
    for layers, dtype in itertools.product((1, 2), (torch.float32, torch.float64)):
        atol = 1e-5 if dtype == torch.float32 else 1e-10
        features = 2 ** (n - 1) + 1 if n > 1 else 2
        compare(name, options, layers, features, max(1, n - 1), dtype, n, atol, grads=n <= 10)


@pytest.mark.parametrize(
    ("name", "options"), [ANSATZ_OPTIONS[0], ANSATZ_OPTIONS[3], ANSATZ_OPTIONS[6]]
)
def test_gradcheck_float64(name, options):
    layer, x = make(name, 2, 6, [0, 2], options, torch.float64, 4)
    ops, wires = layer.ops, layer.measured_wires

    def fn(features, weights):
        return run_circuit(amplitude_encode(features), ops, weights, wires)

    torch.autograd.gradcheck(
        fn, (x.requires_grad_(True), layer.weights.detach().requires_grad_(True))
    )


@pytest.mark.parametrize(("name", "options"), [("ansatz1", {}), ("ansatz2", {"entangler": "ring"})])
def test_pennylane_backend_matches_torch_backend(name, options):
    layer, x = make(name, 2, 12, [0, 3], options, torch.float64, 5)
    x[1] = 0  # zero rows take the same |0…0⟩ route in both backends
    twin = AEVQC(12, name, 2, measured_wires=[0, 3], backend="pennylane", **options).double()
    twin.load_state_dict(layer.state_dict())
    torch.testing.assert_close(twin(x), layer(x), atol=1e-10, rtol=0)
    bad = x.clone()
    bad[3, 0] = float("inf")
    with pytest.raises(ValueError, match=r"row\(s\) 3 "):
        twin(bad)


def test_lightning_backend_runs_the_same_circuit():
    pytest.importorskip("pennylane_lightning")
    layer, x = make("ansatz2", 1, 12, None, {}, torch.float64, 6)
    twin = AEVQC(12, "ansatz2", 1, backend="pennylane:lightning.qubit").double()
    twin.load_state_dict(layer.state_dict())
    torch.testing.assert_close(twin(x), layer(x), atol=1e-6, rtol=0)


def test_pennylane_backend_with_shots():
    layer = AEVQC(8, "ansatz1", 1, backend="pennylane", shots=50, seed=3)
    out = layer(torch.randn(3, 8))
    assert out.shape == (3, 3)
    torch.testing.assert_close(out * 25, (out * 25).round(), atol=1e-4, rtol=0)


def test_unknown_pennylane_device_is_a_config_error():
    from qhead.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot create PennyLane device"):
        AEVQC(8, backend="pennylane:no.such.device")
