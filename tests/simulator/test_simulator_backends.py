"""The simulator's implementations behind one interface: each one forced in turn on the
same circuits, against an independent dense-matrix reference, and the rule that picks one."""

import numpy as np
import pytest
import sim_reference as ref
import torch
from sim_compare import float32_kernels_and_float64_reference, gate_matrix, kernels_match_reference

from qhead.errors import ConfigError
from qhead.simulator import GATES, Op, backends, kernels, run_encoded_circuit

NAMES = ["torch", "torch-plan", "cpu-kernels"]

needs_numba = pytest.mark.skipif(not kernels.available(), reason="numba is not installed")


def _random_circuit(n: int, count: int, seed: int) -> tuple[list[Op], tuple[int, ...]]:
    """A random gate list over every gate of the table, one angle per parametrized gate."""
    rng = np.random.default_rng(seed)
    names = list(GATES)
    ops, params = [], 0
    for _ in range(count):
        name = names[rng.integers(len(names))]
        spec = GATES[name]
        wires = tuple(int(w) for w in rng.choice(n, spec.n_wires, replace=False))
        param = None
        if spec.parametrized:
            param, params = (params,), params + 1
        ops.append(Op(name, wires, param))
    return ops, (max(params, 1),)


def _dense(features: torch.Tensor, n: int, ops, weights: torch.Tensor, wires) -> np.ndarray:
    """⟨Z⟩ by dense 2^n × 2^n matrices built from the gate table's unitaries."""
    out = []
    for row in features.detach().numpy():
        psi = np.zeros(2**n, complex)
        psi[0] = 1.0
        if np.any(row):
            psi = ref.encode(row, n)
        for op in ops:
            psi = gate_matrix(op, weights, n) @ psi
        out.append(ref.expval_z(psi, wires, n))
    return np.array(out)


def _forced(name):
    if name == "cpu-kernels" and not kernels.available():
        pytest.skip("numba is not installed")
    return name


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("n", "count", "seed"), [(2, 10, 10), (3, 12, 0), (4, 30, 1), (5, 40, 2)]
)
def test_every_implementation_matches_dense_matrices(name, n, count, seed):
    ops, shape = _random_circuit(n, count, seed)
    g = torch.Generator().manual_seed(seed)
    weights = torch.rand(shape, generator=g, dtype=torch.float64) * 6.3
    features = torch.randn(5, 2**n - 3, generator=g, dtype=torch.float64)
    features[2] = 0  # all-zero row: |0…0⟩
    wires = (n - 1, 0, 2) if n > 2 else (1, 0)
    out = run_encoded_circuit(features, n, ops, weights, wires, simulator=_forced(name))
    np.testing.assert_allclose(out.numpy(), _dense(features, n, ops, weights, wires), atol=1e-10)


@needs_numba
@pytest.mark.parametrize(
    ("n", "count", "seed"), [(3, 15, 4), (5, 40, 5), (7, 30, 6), (12, 60, 11)]
)
def test_gradients_agree_between_implementations(n, count, seed):
    ops, shape = _random_circuit(n, count, seed)
    g = torch.Generator().manual_seed(seed)
    weights0 = torch.rand(shape, generator=g, dtype=torch.float64) * 6.3
    features0 = torch.randn(4, 2**n, generator=g, dtype=torch.float64)
    features0[1] = 0
    upstream = torch.randn(4, 2, generator=g, dtype=torch.float64)
    grads = {}
    for name in NAMES:
        features = features0.clone().requires_grad_()
        weights = weights0.clone().requires_grad_()
        out = run_encoded_circuit(features, n, ops, weights, (1, n - 1), simulator=name)
        (out * upstream).sum().backward()
        grads[name] = (features.grad, weights.grad)
        assert torch.isfinite(features.grad).all()
        assert not features.grad[1].any()  # all-zero rows get a zero gradient
    for name in ("torch-plan", "cpu-kernels"):
        torch.testing.assert_close(grads[name][0], grads["torch"][0], atol=1e-10, rtol=1e-8)
        torch.testing.assert_close(grads[name][1], grads["torch"][1], atol=1e-10, rtol=1e-8)


def _layered(n: int, layers: int) -> tuple[list[Op], tuple[int]]:
    """``layers`` × (RY on every wire, CZs on neighbours, RY on every wire, a CNOT chain, RX
    on every wire and RY on wire 0, a CNOT chain and RZ), then RY on every wire: real and
    complex segments (the RX segment as phases and real matrices, but wire 0's RX·RY as
    a complex matrix), diagonal runs and permutations."""
    ops, k = [], 0

    def rotations(name: str) -> None:
        nonlocal k
        ops.extend(Op(name, (q,), (k + q,)) for q in range(n))
        k += n

    chain = [Op("CNOT", (q, q + 1), None) for q in range(n - 1)]
    for _ in range(layers):
        rotations("RY")
        ops.extend(Op("CZ", (q, q + 1), None) for q in range(0, n - 1, 2))
        rotations("RY")
        ops.extend(chain)
        rotations("RX")
        ops.append(Op("RY", (0,), (k,)))
        ops.extend([*chain, Op("RZ", (0,), (k + 1,))])
        k += 2
    rotations("RY")
    return ops, (k,)


@needs_numba
@pytest.mark.parametrize("batch", [1, 3, 19, 37])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n", [3, 7])
@pytest.mark.parametrize("lanes", [8, 16])
def test_general_kernel_groups_of_rows_match_the_reference(
    batch, threads, n, lanes, monkeypatch
):
    # The kernel evolves up to kernels.LANES rows together and the rest in smaller
    # power-of-two groups, whose lowest wires take the short-pair loops, and saves the
    # final states in each group's layout for the backward; groups of 16 and 8 rows are
    # encoded into that layout (and their feature gradients read from it) in blocks of 16
    # amplitudes plus a remainder (n = 7: 123 features), other groups and short rows
    # (n = 3) one amplitude at a time. Every batch size, thread split and group cap must
    # give the reference's numbers.
    from qhead.simulator import cpu_kernels
    from qhead.simulator.plan import compile_plan

    monkeypatch.setattr(kernels, "LANES", lanes)
    layers = 2
    ops, shape = _layered(n, layers)
    wires = (0, n // 2, n - 1)
    program = cpu_kernels._program(compile_plan(tuple(ops), n, wires, shape), torch.float64)
    kinds = program.prog[:, 0].tolist()
    assert kinds.count(kernels.OP_SIGN) == layers  # the CZ runs permute nothing
    assert kernels.OP_PERM in kinds and kernels.OP_COMPLEX in kinds
    assert kernels.OP_PHASE in kinds  # the RX segments, split
    # real matrices before the first complex one (real arithmetic) and after it
    real_rows = np.flatnonzero(program.prog[:, 0] == kernels.OP_REAL)
    assert real_rows.min() < program.first_complex < real_rows.max()
    kernels_match_reference(n, ops, wires, shape, batch, threads)


@needs_numba
def test_general_kernel_drops_a_run_of_two_qubit_gates_that_cancels():
    from qhead.simulator import cpu_kernels
    from qhead.simulator.plan import compile_plan

    n = 4
    ops = [Op("RY", (q,), (q,)) for q in range(n)]
    ops += [Op("CNOT", (0, 1)), Op("CNOT", (0, 1))]
    ops += [Op("RX", (q,), (n + q,)) for q in range(n)]
    shape = (2 * n,)
    program = cpu_kernels._program(compile_plan(tuple(ops), n, (0, 3), shape), torch.float64)
    assert kernels.OP_PERM not in program.prog[:, 0] and kernels.OP_SIGN not in program.prog[:, 0]
    g = torch.Generator().manual_seed(0)
    weights = torch.rand(shape, generator=g, dtype=torch.float64) * 6.3
    features = torch.randn(3, 2**n, generator=g, dtype=torch.float64)
    out = run_encoded_circuit(features, n, ops, weights, (0, 3), simulator="cpu-kernels")
    np.testing.assert_allclose(out.numpy(), _dense(features, n, ops, weights, (0, 3)), atol=1e-10)


@needs_numba
@pytest.mark.parametrize("seed", [7, 8])
def test_general_kernel_passes_gradcheck(seed):
    n = 4
    ops, shape = _random_circuit(n, 18, seed)
    g = torch.Generator().manual_seed(seed)
    weights = (torch.rand(shape, generator=g, dtype=torch.float64) * 6.3).requires_grad_()
    features = torch.randn(3, 13, generator=g, dtype=torch.float64).requires_grad_()
    assert _kernel_gradcheck(features, weights, n, ops, (0, 3))


def _kernel_gradcheck(features, weights, n, ops, wires) -> bool:
    def f(x, w):
        return run_encoded_circuit(x, n, ops, w, wires, simulator="cpu-kernels")

    return torch.autograd.gradcheck(f, (features, weights))


@needs_numba
def test_float32_kernels_agree_with_float64_reference():
    n = 12
    ops, shape = _random_circuit(n, 80, 9)
    fast, exact = float32_kernels_and_float64_reference(n, ops, shape, 6.3, 9)
    torch.testing.assert_close(fast, exact, atol=2e-5, rtol=0)


@needs_numba
def test_auto_runs_any_circuit_on_the_general_kernel(monkeypatch):
    calls = []
    real = kernels.general_forward
    monkeypatch.setattr(kernels, "general_forward", lambda *a: calls.append(1) or real(*a))
    ops = [Op("H", (0,)), Op("CZ", (0, 2)), Op("RX", (1,), (0,)), Op("CNOT", (1, 2)),
           Op("RY", (2,), (1,))]
    run_encoded_circuit(torch.randn(2, 8), 3, ops, torch.rand(2), (0, 1, 2))
    assert calls == [1]


@needs_numba
def test_rows_the_kernels_decline_take_the_torch_plan():
    ops = [Op("RX", (0,), (0,)), Op("CNOT", (0, 1)), Op("RY", (2,), (1,)), Op("CZ", (1, 2))]
    weights = torch.tensor([0.3, 1.1], dtype=torch.float64)
    features = torch.randn(3, 8, dtype=torch.float64)
    features[1] *= 1e40  # norm out of the kernels' range: the torch encoder rescales it
    out = run_encoded_circuit(features, 3, ops, weights, (0, 1, 2), simulator="cpu-kernels")
    expected = run_encoded_circuit(features, 3, ops, weights, (0, 1, 2), simulator="torch")
    torch.testing.assert_close(out, expected)


def test_the_rule_picks_kernels_for_exact_cpu_calls_and_the_plan_otherwise():
    x = torch.randn(2, 16)
    expected = "cpu-kernels" if kernels.available() and kernels.enabled() else "torch-plan"
    assert backends.choose("auto", x, 4, None).name == expected
    assert backends.choose("auto", x, 4, 100).name == "torch-plan"  # shots
    assert backends.choose("auto", x.half(), 4, None).name == "torch-plan"
    assert backends.choose("torch", x, 4, 100).name == "torch"


def test_forcing_an_implementation_that_cannot_run_says_why():
    with pytest.raises(ConfigError, match="exact expectations only"):
        backends.choose("cpu-kernels", torch.randn(2, 16), 4, 10)
    with pytest.raises(ConfigError, match="simulator must be one of auto, torch"):
        backends.choose("fast", torch.randn(2, 16), 4, None)


@pytest.mark.parametrize("name", sorted(GATES))
def test_gate_table_facts_match_the_matrices(name):
    spec = GATES[name]
    for theta in ([0.37, 2.9] if spec.parametrized else [None]):
        u = spec.unitary(theta)
        assert u.shape == (2**spec.n_wires,) * 2
        np.testing.assert_allclose(u @ u.conj().T, np.eye(len(u)), atol=1e-12)
        assert spec.real == bool(np.allclose(u.imag, 0))
        assert spec.diagonal == bool(np.allclose(u, np.diag(np.diag(u))))
        is_perm = np.allclose(np.abs(u), np.round(np.abs(u))) and np.allclose(u.imag, 0) and (
            u.real >= 0).all()
        assert spec.permutation == bool(is_perm and not np.allclose(u, np.eye(len(u))))


@pytest.mark.parametrize("name", sorted(GATES))
def test_gate_table_matches_pennylane(name):
    qml = pytest.importorskip("pennylane")
    spec = GATES[name]
    theta = 0.81 if spec.parametrized else None
    cls = getattr(qml, spec.pennylane)
    op = cls(*(() if theta is None else (theta,)), wires=list(range(spec.n_wires)))
    np.testing.assert_allclose(qml.matrix(op), spec.unitary(theta), atol=1e-12)


# ------------------------------------------------------------ the Euler split (kernels)


def _matrix(sequence, weights) -> np.ndarray:
    """The product of a wire's (name, flat angle index) gates, first gate rightmost."""
    u = np.eye(2, dtype=complex)
    for name, p in sequence:
        u = GATES[name].unitary(None if p is None else float(weights[p])) @ u
    return u


def _same_up_to_phase(a: np.ndarray, b: np.ndarray) -> bool:
    k = np.argmax(np.abs(b))
    phase = a.flat[k] / b.flat[k]
    return abs(abs(phase) - 1) < 1e-12 and np.allclose(a, phase * b, atol=1e-12)


@pytest.mark.parametrize(
    "sequence",
    [
        [("RZ", 0), ("RY", 1), ("RZ", 2)],  # Rot
        [("RX", 0)],
        [("RX", 0), ("RX", 1)],  # the phases between them cancel
        [("H", None), ("RY", 0), ("RZ", 1)],  # Ansatz 2's first layer
        [("RZ", 0), ("Z", None), ("X", None), ("RY", 2), ("RZ", 1)],
        [("RZ", 0)],
    ],
)
def test_euler_split_reproduces_the_wire_unitary(sequence):
    from qhead.simulator.cpu_kernels import euler_split

    weights = np.array([0.7, -1.9, 2.6])
    split = euler_split(sequence)
    assert split is not None
    right, real, left = split
    assert all(GATES[name].real for name, _ in real)

    def rz(terms):
        angle = sum((0.0 if p is None else weights[p]) + c for p, c in terms)
        return GATES["RZ"].unitary(angle)

    assert _same_up_to_phase(rz(left) @ _matrix(real, weights) @ rz(right),
                             _matrix(sequence, weights))


@pytest.mark.parametrize("sequence", [[("RX", 0), ("RY", 1)], [("RY", 0), ("RZ", 1), ("RY", 2)]])
def test_euler_split_refuses_a_phase_between_real_gates(sequence):
    from qhead.simulator.cpu_kernels import euler_split

    assert euler_split(sequence) is None


@needs_numba
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("pooled", [False, True])
def test_phase_tables_are_the_kronecker_product_of_rz(dtype, pooled):
    # With a lease (as general_forward calls it) the tables come from the buffer pool.
    n = 4
    angles = torch.tensor([[0.3, -1.2, 2.0, 0.0], [1.0, 0.5, -0.25, 3.0]], dtype=torch.float64)
    lease = kernels.Lease() if pooled else None
    real, imag = kernels._phase_tables(angles, n, dtype, lease)
    assert real.dtype == imag.dtype == dtype and real.shape == (2, 2**n)
    for t in range(2):
        dense = np.ones(1, complex)
        for w in range(n):
            dense = np.kron(dense, np.diag(ref.rz(float(angles[t, w]))))
        tol = 1e-14 if dtype == np.float64 else 1e-7
        np.testing.assert_allclose(real[t] + 1j * imag[t], dense, atol=tol)


@needs_numba
@pytest.mark.parametrize("seed", [0, 1])
def test_split_segments_match_dense_matrices_and_pass_gradcheck(seed):
    # Rot on every wire, RX on every wire with an extra RY on wire 1 (a complex matrix in a
    # split segment), CNOT rings, and phases first on the real encoded state.
    from qhead.simulator import cpu_kernels
    from qhead.simulator.plan import compile_plan

    n, ops, k = 4, [], 0
    ring = [Op("CNOT", (q, (q + 1) % n)) for q in range(n)]
    for q in range(n):
        ops += [Op("RZ", (q,), (k,)), Op("RY", (q,), (k + 1,)), Op("RZ", (q,), (k + 2,))]
        k += 3
    ops += ring
    ops += [Op("RX", (q,), (k + q,)) for q in range(n)] + [Op("RY", (1,), (k + n,))]
    k += n + 1
    ops += ring + [Op("RX", (q,), (k + q,)) for q in range(n)] + ring
    shape = (k + n,)
    wires = (0, 2, 3)
    program = cpu_kernels._program(compile_plan(tuple(ops), n, wires, shape), torch.float64)
    kinds = program.prog[:, 0].tolist()
    assert kinds[0] == kernels.OP_PHASE == kinds[program.first_complex]  # on a real state
    assert kernels.OP_COMPLEX in kinds  # wire 1's RX·RY
    # Rot: φ and ω; RX (+RY): two constant phases; the last RX layer's left phase is dead
    assert kinds.count(kernels.OP_PHASE) == 5
    assert program.phase_grad.tolist() == [1, 1, 0, 0, 0]
    g = torch.Generator().manual_seed(seed)
    weights = (torch.rand(shape, generator=g, dtype=torch.float64) * 6.3).requires_grad_()
    features = torch.randn(3, 2**n - 2, generator=g, dtype=torch.float64)
    features[1] = 0
    out = run_encoded_circuit(features, n, ops, weights, wires, simulator="cpu-kernels")
    expected = _dense(features, n, ops, weights.detach(), wires)
    np.testing.assert_allclose(out.detach().numpy(), expected, atol=1e-12)
    assert _kernel_gradcheck(features.requires_grad_(), weights, n, ops, wires)


@needs_numba
def test_features_changed_in_place_before_the_backward_are_an_error():
    # The general kernel's backward reads the features again (ψ₀ = x/‖x‖): changing them
    # in place after the forward must be torch's error, not a silently wrong gradient.
    n = 5
    ops, shape = _random_circuit(n, 20, 4)
    weights = torch.rand(shape, dtype=torch.float64)
    features = torch.randn(3, 2**n, dtype=torch.float64, requires_grad=True)
    inputs = features * 1  # a non-leaf, so it can be changed in place
    out = run_encoded_circuit(inputs, n, ops, weights, (0, 4), simulator="cpu-kernels")
    with torch.no_grad():
        inputs.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


@needs_numba
def test_a_forward_in_between_does_not_disturb_saved_states():
    # The kernels reuse their buffers: the states saved by one forward must survive
    # another forward (and its release) before their backward.
    n = 6
    ops, shape = _random_circuit(n, 30, 3)
    g = torch.Generator().manual_seed(3)
    weights = torch.rand(shape, generator=g, dtype=torch.float64) * 6.3
    first = torch.randn(5, 2**n, generator=g, dtype=torch.float64).requires_grad_()
    second = torch.randn(5, 2**n, generator=g, dtype=torch.float64).requires_grad_()
    out = run_encoded_circuit(first, n, ops, weights, (0, 5), simulator="cpu-kernels")
    other = run_encoded_circuit(second, n, ops, weights, (0, 5), simulator="cpu-kernels")
    other.sum().backward()
    del other
    run_encoded_circuit(second.detach(), n, ops, weights, (0, 5), simulator="cpu-kernels")
    out.sum().backward()
    reference = first.detach().clone().requires_grad_()
    run_encoded_circuit(reference, n, ops, weights, (0, 5), simulator="torch").sum().backward()
    torch.testing.assert_close(first.grad, reference.grad, atol=1e-12, rtol=1e-10)


@needs_numba
@pytest.mark.parametrize(("forward_threads", "backward_threads"), [(2, 1), (1, 3), (3, 2)])
def test_general_kernel_backward_may_run_on_another_thread_count(forward_threads,
                                                                 backward_threads):
    # The forward saves each group of rows in the layout the backward evolves; the saved
    # layout must not depend on how the batch was split over threads.
    n, batch = 6, 37
    ops, shape = _layered(n, 1)
    g = torch.Generator().manual_seed(5)
    weights = torch.rand(shape, generator=g, dtype=torch.float64) * 6.3
    features = torch.randn(batch, 2**n, generator=g, dtype=torch.float64).requires_grad_()
    upstream = torch.randn(batch, 2, generator=g, dtype=torch.float64)
    old_threads = torch.get_num_threads()
    try:
        torch.set_num_threads(forward_threads)
        out = run_encoded_circuit(features, n, ops, weights, (0, 4), simulator="cpu-kernels")
        torch.set_num_threads(backward_threads)
        (out * upstream).sum().backward()
    finally:
        torch.set_num_threads(old_threads)
    reference = features.detach().clone().requires_grad_()
    expected = run_encoded_circuit(reference, n, ops, weights, (0, 4), simulator="torch")
    (expected * upstream).sum().backward()
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(features.grad, reference.grad, atol=1e-12, rtol=1e-10)


@needs_numba
def test_free_buffers_releases_what_the_kernels_kept():
    ops, shape = _random_circuit(6, 20, 4)
    weights = torch.rand(shape, dtype=torch.float64)
    run_encoded_circuit(torch.randn(3, 64, dtype=torch.float64), 6, ops, weights, (0, 5),
                        simulator="cpu-kernels")
    assert kernels.free_buffers() > 0  # the call's scratch and saved states came back
    assert kernels.free_buffers() == 0
