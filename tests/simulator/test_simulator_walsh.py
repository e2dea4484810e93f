"""Circuits of RX, X and CNOT in the Hadamard frame (``qhead.simulator.walsh``): the frame
against dense matrices, the kernel against the torch reference (values, gradients,
gradcheck, groups of rows, threads, all-zero and declined rows), and which circuits take it."""

import numpy as np
import pytest
import sim_reference as ref
import torch
from sim_compare import float32_kernels_and_float64_reference, outputs_and_gradients

from qhead.simulator import GATES, Op, cpu_kernels, kernels, run_encoded_circuit, walsh
from qhead.simulator.plan import compile_plan

pytestmark = pytest.mark.skipif(not kernels.available(), reason="numba is not installed")


def _frame_circuit(n: int, count: int, seed: int) -> tuple[list[Op], tuple[int, ...]]:
    """Random RX / X / CNOT gates in any order; some angles are used twice."""
    rng = np.random.default_rng(seed)
    ops, params = [], 0
    for _ in range(count):
        name = ["RX", "RX", "X", "CNOT"][rng.integers(4)] if n > 1 else "RX"
        wires = tuple(int(w) for w in rng.choice(n, GATES[name].n_wires, replace=False))
        param = None
        if name == "RX":
            if params and rng.random() < 0.2:
                param = (int(rng.integers(params)),)
            else:
                param, params = (params,), params + 1
        ops.append(Op(name, wires, param))
    return ops, (max(params, 1),)


def _dense_unitary(n: int, ops, weights: np.ndarray) -> np.ndarray:
    u = np.eye(2**n, dtype=complex)
    for op in ops:
        if op.name == "CNOT":
            gate = ref.cnot(*op.wires, n)
        else:
            theta = None if op.param is None else float(weights[op.param])
            gate = ref.one_qubit(GATES[op.name].unitary(theta), op.wires[0], n)
        u = gate @ u
    return u


def _hadamard(n: int) -> np.ndarray:
    h = np.array([[1.0, 1.0], [1.0, -1.0]]) / np.sqrt(2)
    out = np.eye(1)
    for _ in range(n):
        out = np.kron(out, h)
    return out


@pytest.mark.parametrize(("n", "count", "seed"), [(1, 3, 0), (2, 6, 1), (3, 14, 2), (4, 25, 3)])
def test_frame_is_h_phase_h_scatter_up_to_a_global_phase(n, count, seed):
    ops, shape = _frame_circuit(n, count, seed)
    weights = np.random.default_rng(seed).uniform(0, 6.3, shape)
    frame = walsh.hadamard_frame(tuple(ops), n, shape)
    lease = kernels.Lease()
    angles = weights.reshape(-1)[frame.param_index.numpy()]
    cos, sin = walsh.phase_table(frame, angles, np.float64, lease)
    dim = 2**n
    phase = np.diag((cos + 1j * sin) * dim)  # the tables carry 2^−n
    scatter = np.zeros((dim, dim))
    scatter[frame.tau, np.arange(dim)] = 1  # amplitude i goes to row τ(i)
    assert sorted(frame.tau) == list(range(dim))
    hadamard = _hadamard(n)
    built = hadamard @ phase @ hadamard @ scatter
    exact = _dense_unitary(n, ops, weights)
    k = np.unravel_index(np.argmax(np.abs(exact)), exact.shape)
    global_phase = exact[k] / built[k]
    assert abs(abs(global_phase) - 1) < 1e-12
    np.testing.assert_allclose(built * global_phase, exact, atol=1e-12)


@pytest.mark.parametrize(
    "ops",
    [
        [],
        [Op("RY", (0,), (0,)), Op("CNOT", (0, 1))],
        [Op("RX", (0,), (0,)), Op("CZ", (0, 1))],
        [Op("H", (0,)), Op("RX", (1,), (0,))],
        [Op("RX", (0,), (0,)), Op("RZ", (1,), (0,))],
    ],
)
def test_frame_refuses_other_gates(ops):
    assert walsh.hadamard_frame(tuple(ops), 2, (1,)) is None


@pytest.mark.parametrize("batch", [1, 3, 19, 37])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n", [3, 7])
@pytest.mark.parametrize("lanes", [8, 16])
def test_walsh_kernel_matches_the_reference_in_every_group_of_rows(
    batch, threads, n, lanes, monkeypatch
):
    # Groups of 16 and 8 rows and the power-of-two rest (19 = 16 + 2 + 1), each thread's
    # share of ∂L/∂Φ summed, an all-zero row (|0…0⟩, zero gradient), features shorter
    # than 2^n (padding) and a subset of wires measured.
    monkeypatch.setattr(kernels, "LANES", lanes)
    ops, shape = _frame_circuit(n, 6 * n, n + batch)
    wires = (0, n // 2, n - 1)
    assert cpu_kernels.kernel_for(compile_plan(tuple(ops), n, wires, shape)) == "walsh"
    g = torch.Generator().manual_seed(batch)
    weights = torch.rand(shape, generator=g, dtype=torch.float64) * 6.3
    features = torch.randn(batch, 2**n - 5, generator=g, dtype=torch.float64)
    features[batch // 2] = 0
    upstream = torch.randn(batch, len(wires), generator=g, dtype=torch.float64)
    results = outputs_and_gradients(features, weights, n, ops, wires, upstream, threads)
    for fast, slow in zip(results["cpu-kernels"], results["torch"], strict=True):
        torch.testing.assert_close(fast, slow, atol=1e-10, rtol=1e-8)
    assert torch.all(results["cpu-kernels"][1][batch // 2] == 0)


@pytest.mark.parametrize("n", [1, 2, 5])
def test_walsh_kernel_passes_gradcheck(n):
    ops, shape = _frame_circuit(n, 4 * n + 2, 10 + n)
    g = torch.Generator().manual_seed(n)
    weights = (torch.rand(shape, generator=g, dtype=torch.float64) * 6.3).requires_grad_()
    features = torch.randn(3, max(1, 2**n - 1), generator=g, dtype=torch.float64)
    features.requires_grad_()
    wires = tuple(range(n))
    assert cpu_kernels.kernel_for(compile_plan(tuple(ops), n, wires, shape)) == "walsh"

    def f(x, w):
        return run_encoded_circuit(x, n, ops, w, wires, simulator="cpu-kernels")

    assert torch.autograd.gradcheck(f, (features, weights))


def test_float32_walsh_kernel_agrees_with_float64_reference():
    # float32 phase tables come from float32 trigonometry after a float64 reduction to
    # [−π, π]: large angles (many rotations on one parity) must not lose accuracy.
    n = 12
    ops, shape = _frame_circuit(n, 150, 9)
    fast, exact = float32_kernels_and_float64_reference(n, ops, shape, 60, 9)
    torch.testing.assert_close(fast, exact, atol=2e-5, rtol=0)


def test_basic_entangler_with_rx_takes_the_walsh_kernel_and_others_do_not():
    from qhead.quantum.ansatz import build_ansatz

    def kind(name, **options):
        ansatz = build_ansatz(name, **options)
        ops = tuple(ansatz.ops(3, 6))
        return cpu_kernels.kernel_for(compile_plan(ops, 6, tuple(range(6)),
                                                   ansatz.shape(3, 6)))

    assert kind("basic-entangler") == "walsh"
    assert kind("basic-entangler", rotation="RY") == "general"
    assert kind("strongly-entangling") == "general"


def test_rows_the_walsh_kernel_declines_take_the_torch_plan():
    n = 3
    ops, shape = _frame_circuit(n, 10, 4)
    weights = torch.rand(shape, dtype=torch.float64)
    features = torch.randn(3, 8, dtype=torch.float64)
    features[1] *= 1e40  # norm out of the kernels' range: the torch encoder rescales it
    out = run_encoded_circuit(features, n, ops, weights, (0, 2), simulator="cpu-kernels")
    expected = run_encoded_circuit(features, n, ops, weights, (0, 2), simulator="torch")
    torch.testing.assert_close(out, expected)
    features[1] = float("nan")
    with pytest.raises(ValueError):
        run_encoded_circuit(features, n, ops, weights, (0, 2), simulator="cpu-kernels")


@pytest.mark.parametrize(("forward_threads", "backward_threads"), [(2, 1), (1, 3)])
def test_walsh_backward_may_run_on_another_thread_count(forward_threads, backward_threads):
    n, batch = 6, 37
    ops, shape = _frame_circuit(n, 30, 5)
    g = torch.Generator().manual_seed(5)
    weights = (torch.rand(shape, generator=g, dtype=torch.float64) * 6.3).requires_grad_()
    features = torch.randn(batch, 2**n, generator=g, dtype=torch.float64).requires_grad_()
    old_threads = torch.get_num_threads()
    try:
        torch.set_num_threads(forward_threads)
        out = run_encoded_circuit(features, n, ops, weights, (0, 4), simulator="cpu-kernels")
        torch.set_num_threads(backward_threads)
        out.sum().backward()
    finally:
        torch.set_num_threads(old_threads)
    x = features.detach().clone().requires_grad_()
    w = weights.detach().clone().requires_grad_()
    run_encoded_circuit(x, n, ops, w, (0, 4), simulator="torch").sum().backward()
    torch.testing.assert_close(features.grad, x.grad, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(weights.grad, w.grad, atol=1e-12, rtol=1e-10)


def test_walsh_backward_is_reproducible_and_features_changed_in_place_are_an_error():
    n = 5
    ops, shape = _frame_circuit(n, 20, 6)
    weights = torch.rand(shape, dtype=torch.float64, requires_grad=True)
    features = torch.randn(19, 2**n, dtype=torch.float64)
    grads = []
    for _ in range(3):
        w = weights.detach().clone().requires_grad_()
        x = features.clone().requires_grad_()
        run_encoded_circuit(x, n, ops, w, (1, 3), simulator="cpu-kernels").sum().backward()
        grads.append((x.grad, w.grad))
    for x_grad, w_grad in grads[1:]:
        assert torch.equal(x_grad, grads[0][0]) and torch.equal(w_grad, grads[0][1])
    inputs = features.clone().requires_grad_() * 1
    out = run_encoded_circuit(inputs, n, ops, weights, (1, 3), simulator="cpu-kernels")
    with torch.no_grad():
        inputs.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


def test_a_frame_circuit_without_angles_runs_on_the_walsh_kernel():
    # CNOTs and X only: the phase table holds the X's constant π terms alone.
    n = 3
    ops = [Op("CNOT", (0, 1)), Op("X", (2,)), Op("CNOT", (2, 0)), Op("X", (1,))]
    weights = torch.zeros(1, dtype=torch.float64)
    assert cpu_kernels.kernel_for(compile_plan(tuple(ops), n, (0, 1, 2), (1,))) == "walsh"
    features = torch.randn(4, 8, dtype=torch.float64)
    upstream = torch.randn(4, 3, dtype=torch.float64)
    results = outputs_and_gradients(features, weights, n, ops, (0, 1, 2), upstream)
    assert not results["cpu-kernels"][2].any()  # no angle reaches the outputs
    for fast, slow in zip(results["cpu-kernels"], results["torch"], strict=True):
        torch.testing.assert_close(fast, slow, atol=1e-12, rtol=1e-10)
