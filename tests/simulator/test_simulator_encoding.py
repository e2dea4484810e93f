import math

import numpy as np
import pytest
import torch

from qhead.simulator import amplitude_encode, num_qubits


@pytest.mark.parametrize(
    ("n_features", "expected"), [(1, 1), (2, 1), (3, 2), (4, 2), (5, 3), (25088, 15), (2**15, 15)]
)
def test_num_qubits(n_features, expected):
    assert num_qubits(n_features) == expected


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "8"])
def test_num_qubits_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="positive integer"):
        num_qubits(bad)


def test_pads_normalises_and_uses_c_order():
    x = torch.arange(1.0, 13.0, dtype=torch.float64).reshape(2, 3, 2, 1)  # N = 6 → n = 3
    state = amplitude_encode(x)
    assert state.shape == (2, 2, 2, 2)
    flat = state.reshape(2, -1)
    expected = torch.zeros(2, 8, dtype=torch.float64)
    expected[:, :6] = x.reshape(2, 6) / x.reshape(2, 6).norm(dim=1, keepdim=True)
    torch.testing.assert_close(flat, expected)
    # Wire 0 is the most significant bit: amplitude of |1 0 0⟩ is feature 4.
    assert state[0, 1, 0, 0] == flat[0, 4]


def test_matches_pennylane_amplitude_embedding():
    qml = pytest.importorskip("pennylane")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 11))
    dev = qml.device("default.qubit", wires=4)

    @qml.qnode(dev)
    def circuit(features):
        qml.AmplitudeEmbedding(features, wires=range(4), pad_with=0.0, normalize=True)
        return qml.state()

    ours = amplitude_encode(torch.tensor(x)).reshape(3, -1).numpy()
    for i in range(3):
        np.testing.assert_allclose(ours[i], circuit(x[i]).real, atol=1e-12)


def test_explicit_n_qubits_pads_further_and_rejects_too_few():
    x = torch.randn(2, 5)
    assert amplitude_encode(x, n_qubits=5).shape == (2, 2, 2, 2, 2, 2)
    with pytest.raises(ValueError, match="need at least 3"):
        amplitude_encode(x, n_qubits=2)


def test_zero_row_maps_to_basis_state_zero_with_zero_gradient():
    x = torch.randn(3, 6, dtype=torch.float64)
    x[1] = 0
    x.requires_grad_(True)
    state = amplitude_encode(x).reshape(3, -1)
    assert torch.equal(state[1], torch.eye(8, dtype=torch.float64)[0])
    (state * torch.randn_like(state)).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert torch.equal(x.grad[1], torch.zeros(6, dtype=torch.float64))
    assert x.grad[0].abs().sum() > 0


@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_tiny_and_huge_rows_normalise_without_overflow(scale):
    base = torch.randn(2, 7)
    state = amplitude_encode(base * scale).reshape(2, -1)
    torch.testing.assert_close(state.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(state, amplitude_encode(base).reshape(2, -1))


def test_gradient_is_that_of_x_over_norm():
    x = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda t: amplitude_encode(t), (x,))
    # (At an all-zero row the map is discontinuous, so no finite-difference check
    # applies there; its documented gradient, zero, is tested above.)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_rows_raise_naming_the_rows(bad):
    x = torch.randn(5, 4)
    x[1, 2] = bad
    x[3, 0] = bad
    with pytest.raises(ValueError, match=r"row\(s\) 1, 3 \(2 of 5\)"):
        amplitude_encode(x)


def test_half_precision_is_computed_in_float32():
    x = torch.randn(2, 8)
    state = amplitude_encode(x.half())
    assert state.dtype == torch.float32
    torch.testing.assert_close(state, amplitude_encode(x.half().float()))


@pytest.mark.parametrize("bad", [torch.ones(3), torch.ones(2, 3, dtype=torch.int64)])
def test_rejects_bad_tensors(bad):
    with pytest.raises(ValueError):
        amplitude_encode(bad)
