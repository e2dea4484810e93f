import math

import numpy as np
import pytest
import sim_reference as ref
import torch
from sim_reference import random_state

from qhead.simulator import cnot_permutation, expval_z, sample_expval_z, z_signs


def test_expval_z_matches_dense_reference():
    n = 4
    state = random_state(3, n, complex_=True)
    out = expval_z(state, [2, 0, 3])
    for i in range(3):
        expected = ref.expval_z(state[i].reshape(-1).numpy(), [2, 0, 3], n)
        np.testing.assert_allclose(out[i].numpy(), expected, atol=1e-12)


def test_z_signs_folds_a_permutation():
    n = 4
    state = random_state(2, n)
    perm = cnot_permutation(n, [(0, 1), (1, 2), (2, 3)])
    moved = state.reshape(2, -1)[:, perm].reshape(state.shape)
    folded = state.reshape(2, -1).square() @ z_signs(
        n, [0, 1, 2, 3], torch.float64, permutation=perm
    )
    torch.testing.assert_close(folded, expval_z(moved, [0, 1, 2, 3]))


def test_shot_estimates_converge_within_binomial_bound():
    # Each estimate is a mean of S ±1 outcomes, so the mean of R independent estimates
    # has standard deviation σ = sqrt((1 − ⟨Z⟩²) / (S·R)). With a fixed seed, 5σ
    # (two-sided p ≈ 6e-7 per value) is a safe and still sharp tolerance.
    n, shots, repeats = 4, 100, 400
    state = random_state(3, n)
    wires = [0, 1, 2, 3]
    exact = expval_z(state, wires)
    gen = torch.Generator().manual_seed(1234)
    mean = torch.stack([sample_expval_z(state, wires, shots, gen) for _ in range(repeats)]).mean(0)
    sigma = ((1 - exact**2) / (shots * repeats)).sqrt()
    assert ((mean - exact).abs() <= 5 * sigma + 1e-12).all()
    # ... and a single estimate is noisy (it is not secretly the exact value).
    single = sample_expval_z(state, wires, shots, gen)
    assert not torch.allclose(single, exact, atol=1e-3)


def test_shot_values_are_multiples_of_two_over_shots_and_reproducible():
    state = random_state(2, 3)
    a = sample_expval_z(state, [0, 2], 10, torch.Generator().manual_seed(7))
    b = sample_expval_z(state, [0, 2], 10, torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, b)
    steps = (a + 1) * 10 / 2
    torch.testing.assert_close(steps, steps.round())
    assert (a.abs() <= 1).all()


def test_shot_mode_gradient_is_the_exact_gradient():
    state = random_state(2, 3).requires_grad_(True)
    weights = torch.tensor([0.3, -0.7], dtype=torch.float64)
    (sample_expval_z(state, [1, 2], 5, torch.Generator().manual_seed(0)) * weights).sum().backward()
    shot_grad = state.grad.clone()
    state.grad = None
    (expval_z(state, [1, 2]) * weights).sum().backward()
    torch.testing.assert_close(shot_grad, state.grad)


def test_deterministic_state_gives_exact_shots():
    state = torch.zeros(1, 8)
    state[0, 0b101] = 1
    out = sample_expval_z(state.reshape(1, 2, 2, 2), [0, 1, 2], 3)
    torch.testing.assert_close(out, torch.tensor([[-1.0, 1.0, -1.0]]))


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_shots_raise(bad):
    with pytest.raises(ValueError, match="shots"):
        sample_expval_z(random_state(1, 2), [0], bad)


def test_bad_wires_raise():
    with pytest.raises(ValueError, match="out of range"):
        expval_z(random_state(1, 2), [2])
    with pytest.raises(ValueError, match="at least one"):
        expval_z(random_state(1, 2), [])


def test_sigma_formula_sanity():
    assert math.isclose(math.sqrt((1 - 0.0) / 100), 0.1)
