import math
import warnings

import pytest
import torch

from qhead.errors import ConfigError
from qhead.quantum import AEVQC, CircuitLintWarning
from qhead.simulator import MAX_QUBITS


@pytest.fixture(autouse=True)
def _quiet_lint():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CircuitLintWarning)
        yield


def test_paper_sizes():
    layer = AEVQC(512 * 7 * 7, "ansatz2", 1)
    assert (layer.n_qubits, layer.out_features) == (15, 15)
    assert layer.weights.shape == (1, 2, 15)
    assert sum(p.numel() for p in layer.parameters()) == 30
    aot = AEVQC(25088, "ansatz1", 3, measured_wires=12)
    assert aot.measured_wires == tuple(range(12))
    assert sum(p.numel() for p in aot.parameters()) == 45
    assert [name for name, _ in aot.named_parameters()] == ["weights"]


def test_weights_initialised_uniformly_in_0_2pi():
    torch.manual_seed(0)
    w = AEVQC(2**10, "ansatz1", 50).weights.detach()
    assert w.min() >= 0 and w.max() < 2 * math.pi
    assert abs(float(w.mean()) - math.pi) < 0.2


def test_forward_accepts_vectors_and_feature_maps():
    layer = AEVQC(2 * 3 * 3, "ansatz2", 2, measured_wires=[4, 0])
    maps = torch.randn(5, 2, 3, 3)
    out = layer(maps)
    assert out.shape == (5, 2) and out.dtype == torch.float32
    assert (out.abs() <= 1 + 1e-6).all()
    torch.testing.assert_close(layer(maps.reshape(5, -1)), out)
    with pytest.raises(ValueError, match=r"expects \[B, 18\]"):
        layer(torch.randn(5, 17))


@pytest.mark.parametrize(
    ("wires", "match"),
    [
        (0, "a positive integer m"),
        (4, "m=4 but the feature map has 3 qubits; allowed: 1..3"),
        ([0, 0], "distinct wires in 0..2"),
        ([3], "distinct wires in 0..2"),
        ([], "at least one"),
        ("ab", "measured_wires"),
        (True, "measured_wires"),
    ],
)
def test_measured_wires_validation(wires, match):
    with pytest.raises(ConfigError, match=match):
        AEVQC(8, measured_wires=wires)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"in_features": 0}, "in_features"),
        ({"in_features": 8, "layers": 0}, "layers"),
        ({"in_features": 8, "shots": 0}, "shots"),
        ({"in_features": 8, "backend": "cirq"}, "backend must be"),
        ({"in_features": 8, "backend": "pennylane:"}, "backend must be"),
        ({"in_features": 2**MAX_QUBITS + 1}, f"limit of {MAX_QUBITS} qubits"),
    ],
)
def test_constructor_validation(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        AEVQC(**kwargs)


def test_shots_switch_at_run_time_and_are_reproducible():
    torch.manual_seed(0)
    layer = AEVQC(16, "ansatz2", 1)
    x = torch.randn(3, 16)
    exact = layer(x)
    layer.shots = 20
    layer.generator = torch.Generator().manual_seed(5)
    noisy = layer(x)
    layer.generator = torch.Generator().manual_seed(5)
    torch.testing.assert_close(layer(x), noisy)
    assert not torch.allclose(noisy, exact)
    torch.testing.assert_close(noisy * 10, (noisy * 10).round())  # multiples of 2/20
    layer.shots = None
    torch.testing.assert_close(layer(x), exact)
    with pytest.raises(ConfigError, match="shots"):
        layer.shots = -5


def test_shot_mean_converges_to_exact_output():
    torch.manual_seed(3)
    layer = AEVQC(8, "ansatz1", 1, shots=200, generator=torch.Generator().manual_seed(0))
    x = torch.randn(2, 8)
    repeats = 200
    with torch.no_grad():
        mean = torch.stack([layer(x) for _ in range(repeats)]).mean(0)
        layer.shots = None
        exact = layer(x)
    sigma = ((1 - exact**2) / (200 * repeats)).sqrt()
    assert ((mean - exact).abs() <= 5 * sigma + 1e-6).all()


def test_double_and_half_inputs():
    layer = AEVQC(8, "ansatz2", 1)
    x = torch.randn(2, 8)
    ref = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x.bfloat16())
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    torch.testing.assert_close(out, layer(x.bfloat16().float()))
    double = layer.double()(x.double())
    assert double.dtype == torch.float64
    torch.testing.assert_close(double.float(), ref, atol=1e-5, rtol=0)


def test_zero_and_non_finite_rows():
    layer = AEVQC(8, "ansatz2", 1)
    x = torch.randn(3, 8)
    x[1] = 0
    x.requires_grad_(True)
    out = layer(x)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.equal(x.grad[1], torch.zeros(8)) and torch.isfinite(x.grad).all()
    bad = torch.randn(3, 8)
    bad[2, 5] = float("nan")
    with pytest.raises(ValueError, match=r"row\(s\) 2 "):
        layer(bad)


def test_config_rebuilds_the_same_layer():
    layer = AEVQC(12, "ansatz2", 2, measured_wires=[1, 3], gates=("RX", "RY"), entangler="ring")
    config = layer.config()
    assert config == {
        "in_features": 12,
        "ansatz": "ansatz2",
        "layers": 2,
        "measured_wires": [1, 3],
        "shots": None,
        "backend": "torch",
        "gates": ["RX", "RY"],
        "entangler": "ring",
    }
    twin = AEVQC(**config)
    twin.load_state_dict(layer.state_dict())
    x = torch.randn(4, 12)
    torch.testing.assert_close(twin(x), layer(x))
    assert "n_qubits=4" in repr(layer)


def test_trains_end_to_end():
    torch.manual_seed(0)
    layer = AEVQC(8, "ansatz1", 1)
    head = torch.nn.Linear(3, 2)
    x, y = torch.randn(16, 8), torch.randint(0, 2, (16,))
    optim = torch.optim.Adam([*layer.parameters(), *head.parameters()], lr=0.1)
    losses = []
    for _ in range(30):
        optim.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(layer(x)), y)
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_forward_backward_matches_cpu():
    layer = AEVQC(32, "ansatz2", 2)
    x = torch.randn(4, 32)
    cpu = layer(x)
    gpu_layer = AEVQC(32, "ansatz2", 2).cuda()
    gpu_layer.load_state_dict(layer.state_dict())
    out = gpu_layer(x.cuda())
    torch.testing.assert_close(out.cpu(), cpu, atol=1e-5, rtol=0)
    out.sum().backward()
    assert torch.isfinite(gpu_layer.weights.grad).all()
