import random

import numpy as np
import pytest
import sim_reference as ref
import torch
from sim_reference import random_state

from qhead.simulator import (
    Op,
    ansatz1_closed_form,
    expval_z,
    product_expval_z,
    rotation_matrix,
    run_circuit,
    ry,
    validate_ops,
)

DENSE = {"RX": ref.rx, "RY": ref.ry, "RZ": ref.rz}


def random_ops(n, count, seed, names=("H", "X", "Z", "RX", "RY", "RZ", "CNOT")):
    rng = random.Random(seed)
    ops, k = [], 0
    for _ in range(count):
        name = rng.choice(names if n > 1 else [m for m in names if m != "CNOT"])
        if name == "CNOT":
            ops.append(Op(name, tuple(rng.sample(range(n), 2))))
        elif name in DENSE:
            ops.append(Op(name, (rng.randrange(n),), (k,)))
            k += 1
        else:
            ops.append(Op(name, (rng.randrange(n),)))
    return ops, max(k, 1)


def dense_run(state, ops, weights, wires, n):
    out = []
    for psi in state.reshape(state.shape[0], -1).to(torch.complex128).numpy():
        for op in ops:
            if op.name == "CNOT":
                psi = ref.cnot(*op.wires, n) @ psi
            else:
                u = DENSE[op.name](float(weights[op.param])) if op.param else getattr(ref, op.name)
                psi = ref.one_qubit(u, op.wires[0], n) @ psi
        out.append(ref.expval_z(psi, wires, n))
    return np.array(out)


@pytest.mark.parametrize("seed", range(12))
def test_optimised_and_gate_by_gate_paths_match_dense_reference(seed):
    n = 1 + seed % 5
    ops, k = random_ops(n, 14, seed)
    wires = list(range(n))[:: 1 + seed % 2]
    state = random_state(3, n, seed)
    weights = torch.rand(k, dtype=torch.float64) * 6.3
    expected = dense_run(state, ops, weights, wires, n)
    for optimize in (True, False):
        out = run_circuit(state, ops, weights, wires, optimize=optimize)
        np.testing.assert_allclose(out.numpy(), expected, atol=1e-12)


@pytest.mark.parametrize(
    "names", [("H", "RY", "CNOT"), ("RY", "RZ", "CNOT", "X"), ("RX", "RY", "H")]
)
def test_gradients_of_both_paths_agree_and_pass_gradcheck(names):
    n = 3
    ops, k = random_ops(n, 10, 5, names)
    state = random_state(2, n).requires_grad_(True)
    weights = (torch.rand(k, dtype=torch.float64) * 6.3).requires_grad_(True)
    fast = lambda s, w: run_circuit(s, ops, w, [0, 2])  # noqa: E731
    slow = lambda s, w: run_circuit(s, ops, w, [0, 2], optimize=False)  # noqa: E731
    torch.autograd.gradcheck(fast, (state, weights))
    g_fast = torch.autograd.grad(fast(state, weights).sum(), (state, weights))
    g_slow = torch.autograd.grad(slow(state, weights).sum(), (state, weights))
    for a, b in zip(g_fast, g_slow, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("gate", ["RX", "RY", "RZ"])
def test_ansatz1_closed_form_equals_simulation(gate):
    n, layers = 4, 3
    state = random_state(5, n, 3)
    weights = torch.rand(layers, n, dtype=torch.float64) * 6.3
    simulated = state.to(torch.complex128)
    for d in range(layers):
        for q in range(n):
            u = rotation_matrix(gate, weights[d, q]).to(torch.complex128)
            simulated = torch.stack(
                [
                    torch.from_numpy(ref.one_qubit(u.numpy(), q, n) @ s.reshape(-1).numpy())
                    for s in simulated
                ]
            ).reshape(simulated.shape)
    wires = [3, 0, 1]
    torch.testing.assert_close(
        ansatz1_closed_form(state, weights, gate, wires), expval_z(simulated, wires)
    )


def test_ansatz1_closed_form_formula_and_gradcheck():
    # ⟨Z⟩ = cos θ ⟨Z⟩₀ − sin θ ⟨X⟩₀: on |+⟩ this is −sin θ, on |0⟩ cos θ.
    plus = torch.tensor([[1.0, 1.0]], dtype=torch.float64) / 2**0.5
    zero = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    theta = torch.tensor([[0.4]], dtype=torch.float64)
    torch.testing.assert_close(ansatz1_closed_form(plus, theta), -torch.sin(theta))
    torch.testing.assert_close(ansatz1_closed_form(zero, theta), torch.cos(theta))
    state = random_state(2, 3).requires_grad_(True)
    weights = torch.rand(2, 3, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda s, w: ansatz1_closed_form(s, w, "RY"), (state, weights))


def test_product_expval_z_with_general_matrices():
    n = 3
    state = random_state(4, n, 9)
    mats = torch.stack(
        [rotation_matrix("RX", torch.tensor(0.3, dtype=torch.float64)) @ ref_h(), ref_h()]
    )
    out = product_expval_z(state, mats, [2, 0])
    s = state.to(torch.complex128)
    s = torch.stack(
        [
            torch.from_numpy(
                ref.one_qubit(mats[0].numpy(), 2, n)
                @ ref.one_qubit(mats[1].numpy(), 0, n)
                @ v.reshape(-1).numpy()
            )
            for v in s
        ]
    ).reshape(s.shape)
    torch.testing.assert_close(out, expval_z(s, [2, 0]))


def ref_h():
    return torch.from_numpy(ref.H)


def test_trailing_phases_are_dropped_but_weights_get_zero_gradient():
    ops = [Op("RZ", (0,), (0,)), Op("CNOT", (0, 1)), Op("RZ", (1,), (1,))]
    state = random_state(2, 2)
    weights = torch.rand(2, dtype=torch.float64, requires_grad=True)
    out = run_circuit(state, ops, weights, [0, 1])
    torch.testing.assert_close(out, run_circuit(state, ops, weights, [0, 1], optimize=False))
    out.sum().backward()
    assert torch.equal(weights.grad, torch.zeros(2, dtype=torch.float64))


def test_shots_through_a_circuit_use_the_folded_permutation():
    # H on wire 0 then CNOT(0, 1): outcomes 00 or 11, so ⟨Z0⟩ and ⟨Z1⟩ estimates are equal.
    ops = [Op("H", (0,)), Op("CNOT", (0, 1))]
    state = torch.zeros(4, 4)
    state[:, 0] = 1
    out = run_circuit(
        state.reshape(4, 2, 2),
        ops,
        torch.zeros(1),
        [0, 1],
        shots=50,
        generator=torch.Generator().manual_seed(0),
    )
    torch.testing.assert_close(out[:, 0], out[:, 1])
    assert out.abs().max() < 1


def test_per_example_rotation_in_circuit_agrees_with_ry():
    state = random_state(2, 2)
    out = run_circuit(state, [Op("RY", (1,), (0,))], torch.tensor([0.5], dtype=torch.float64), [1])
    torch.testing.assert_close(out, expval_z(ry(state, 0.5, 1), [1]))


@pytest.mark.parametrize(
    ("ops", "match"),
    [
        ([Op("T", (0,))], "unknown gate"),
        ([Op("RY", (0,))], "needs an angle"),
        ([Op("H", (0,), (0,))], "takes no angle"),
        ([Op("CNOT", (0, 0))], "distinct"),
        ([Op("RY", (3,), (0,))], "wires must lie"),
        ([Op("RY", (0,), (5,))], "outside weights"),
    ],
)
def test_validate_ops_rejects_bad_circuits(ops, match):
    with pytest.raises(ValueError, match=match):
        validate_ops(ops, 2, (2,))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    ops, k = random_ops(4, 16, 3)
    state = random_state(3, 4)
    weights = torch.rand(k, dtype=torch.float64)
    cpu = run_circuit(state, ops, weights, [0, 1, 2, 3])
    gpu = run_circuit(state.cuda(), ops, weights.cuda(), [0, 1, 2, 3])
    torch.testing.assert_close(gpu.cpu(), cpu)
    shots = run_circuit(
        state.cuda(),
        ops,
        weights.cuda(),
        [0],
        shots=100,
        generator=torch.Generator("cuda").manual_seed(0),
    )
    assert shots.device.type == "cuda"


@pytest.mark.parametrize("n", [7, 11])
def test_full_rotation_layers_use_blocked_products_correctly(n):
    # A full layer on n > 5 wires is split into first, middle and last blocks.
    ops = [Op("H", (q,)) for q in range(n)]
    ops += [Op("RX" if q % 3 else "RY", (q,), (q,)) for q in range(n)]
    ops += [Op("CNOT", (q, q + 1)) for q in range(n - 1)]
    ops += [Op("RY", (q,), (n + q,)) for q in range(n)]
    state = random_state(2, n, 11).requires_grad_(True)
    weights = (torch.rand(2 * n, dtype=torch.float64) * 6.3).requires_grad_(True)
    wires = [0, n // 2, n - 1]
    fast = run_circuit(state, ops, weights, wires)
    slow = run_circuit(state, ops, weights, wires, optimize=False)
    torch.testing.assert_close(fast, slow)
    g_fast = torch.autograd.grad(fast.sum(), (state, weights))
    g_slow = torch.autograd.grad(slow.sum(), (state, weights))
    for a, b in zip(g_fast, g_slow, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    ("n", "wires", "wht"),
    [
        (5, [0, 3, 4], False),
        (9, [8, 0, 6, 3, 5], False),
        (11, [10, 0, 1, 5, 7], False),
        (9, [8, 0, 6, 3, 5], True),
    ],
)
def test_z_and_x_match_dense_reference_and_gradcheck(monkeypatch, n, wires, wht):
    # n = 11 exercises the Gram matrices of wire pairs from the top (at several depths,
    # one pair skipped because no wire of it is measured) and of the bottom group; n = 5
    # and 9 a bottom group only; wht=True the Walsh–Hadamard path used on CUDA.
    import qhead.simulator.torch_plan as torch_plan
    from qhead.simulator import z_and_x

    monkeypatch.setattr(torch_plan, "_WHT_ON_CPU", wht)
    state = random_state(3, n, 21)
    z, x = z_and_x(state, wires)
    for i in range(3):
        psi = state[i].reshape(-1).numpy().astype(complex)
        np.testing.assert_allclose(z[i].numpy(), ref.expval_z(psi, wires, n), atol=1e-12)
        for j, w in enumerate(wires):
            flipped = ref.one_qubit(ref.X, w, n) @ psi
            np.testing.assert_allclose(
                float(x[i, j]), float((psi.conj() @ flipped).real), atol=1e-12
            )
    torch.autograd.gradcheck(
        lambda s: torch.cat(z_and_x(s, wires), dim=1),
        (state.requires_grad_(True),),
        fast_mode=True,  # random projections: 2^9 inputs would need 512 perturbations
    )
