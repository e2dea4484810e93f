import numpy as np
import pytest
import sim_reference as ref
import torch
from sim_reference import random_state

from qhead.simulator import (
    apply_matrix,
    apply_permutation,
    cnot,
    cnot_permutation,
    hadamard,
    rx,
    rx_matrix,
    ry,
    ry_matrix,
    rz,
    rz_matrix,
)


def dense_apply(state, matrix):
    flat = state.reshape(state.shape[0], -1).to(torch.complex128).numpy()
    return flat @ matrix.T


@pytest.mark.parametrize(("fn", "dense"), [(rx, ref.rx), (ry, ref.ry), (rz, ref.rz)])
@pytest.mark.parametrize("wire", [0, 1, 3])
def test_rotations_match_dense_reference(fn, dense, wire):
    n, theta = 4, 0.7
    state = random_state(3, n, complex_=True)
    out = fn(state, theta, wire).reshape(3, -1).numpy()
    np.testing.assert_allclose(
        out, dense_apply(state, ref.one_qubit(dense(theta), wire, n)), atol=1e-12
    )


def test_rotation_matrices_match_pennylane():
    qml = pytest.importorskip("pennylane")
    theta = torch.tensor([0.3, -1.2, 2.5], dtype=torch.float64)
    for ours, theirs in ((rx_matrix, qml.RX), (ry_matrix, qml.RY), (rz_matrix, qml.RZ)):
        for i, t in enumerate(theta):
            np.testing.assert_allclose(
                ours(theta)[i].numpy(), theirs(float(t), wires=0).matrix(), atol=1e-14
            )


def test_hadamard_and_general_matrix():
    n = 3
    state = random_state(2, n)
    np.testing.assert_allclose(
        hadamard(state, 1).reshape(2, -1).numpy(),
        dense_apply(state, ref.one_qubit(ref.H, 1, n)).real,
        atol=1e-12,
    )
    u = torch.tensor([[0.6, 0.8j], [0.8j, 0.6]], dtype=torch.complex128)
    np.testing.assert_allclose(
        apply_matrix(state, u, 2).reshape(2, -1).numpy(),
        dense_apply(state, ref.one_qubit(u.numpy(), 2, n)),
        atol=1e-12,
    )


def test_per_example_angles():
    state = random_state(3, 3)
    theta = torch.tensor([0.1, 1.0, -2.0], dtype=torch.float64)
    batched = ry(state, theta, 1)
    for i in range(3):
        torch.testing.assert_close(batched[i : i + 1], ry(state[i : i + 1], float(theta[i]), 1))
    mats = ry_matrix(theta)
    torch.testing.assert_close(apply_matrix(state, mats, 1), batched)


def test_real_fast_path_stays_real_and_rx_rz_become_complex():
    state = random_state(2, 3).float()
    assert not ry(state, 0.3, 0).is_complex()
    assert not hadamard(state, 2).is_complex()
    assert not cnot(state, 0, 2).is_complex()
    assert rx(state, 0.3, 0).dtype == torch.complex64
    assert rz(state.double(), 0.3, 0).dtype == torch.complex128


def test_cnot_matches_dense_and_wire_zero_is_msb():
    n = 4
    state = random_state(2, n)
    for control, target in [(0, 1), (3, 0), (1, 3)]:
        np.testing.assert_allclose(
            cnot(state, control, target).reshape(2, -1).numpy(),
            dense_apply(state, ref.cnot(control, target, n)).real,
            atol=1e-12,
        )
    basis = torch.zeros(1, 2**n)
    basis[0, 0b1000] = 1  # wire 0 set
    out = cnot(basis.reshape(1, 2, 2, 2, 2), 0, 3).reshape(-1)
    assert out[0b1001] == 1


def test_cnot_chain_is_one_gather_equal_to_sequential_gates():
    n = 5
    pairs = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 0)]
    state = random_state(2, n)
    sequential = state
    for c, t in pairs:
        sequential = cnot(sequential, c, t)
    torch.testing.assert_close(apply_permutation(state, cnot_permutation(n, pairs)), sequential)


def test_gates_differentiate_in_float64():
    state = random_state(2, 3).requires_grad_(True)
    theta = torch.tensor([0.4, -0.9], dtype=torch.float64, requires_grad=True)
    for fn in (rx, ry, rz):
        torch.autograd.gradcheck(
            lambda s, t, fn=fn: torch.view_as_real(fn(s, t, 1).to(torch.complex128)), (state, theta)
        )


@pytest.mark.parametrize(
    "call", [lambda s: ry(s, 0.1, 3), lambda s: cnot(s, 1, 1), lambda s: cnot(s, 0, 5)]
)
def test_bad_wires_raise(call):
    with pytest.raises(ValueError):
        call(random_state(1, 3))
