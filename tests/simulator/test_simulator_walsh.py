"""Circuits in the Hadamard frame (``qhead.simulator.walsh``): the frame against dense
matrices, the kernel against the torch reference (values, gradients, gradcheck, groups of
rows, threads, all-zero and declined rows), and which circuits take it."""

import numpy as np
import pytest
import torch
from sim_compare import (
    float32_kernels_and_float64_reference,
    gate_matrix,
    kernels_match_reference,
    outputs_and_gradients,
)

from qhead.simulator import GATES, Op, cpu_kernels, kernels, run_encoded_circuit, walsh
from qhead.simulator.plan import compile_plan

pytestmark = pytest.mark.skipif(not kernels.available(), reason="numba is not installed")


#: The gates of the Hadamard frame, in proportions that give both frames work ("H": H on
#: every wire, in a random order — the frame takes H only as whole columns).
_ALL_GATES = ("RX", "RX", "RY", "RY", "RZ", "X", "Z", "CNOT", "CNOT", "CZ", "H")


def _frame_circuit(n: int, count: int, seed: int, names=("RX", "RX", "X", "CNOT")
                   ) -> tuple[list[Op], tuple[int, ...]]:
    """Random gates of ``names`` in any order (one-qubit ones only when n = 1); some
    angles are used twice."""
    rng = np.random.default_rng(seed)
    if n == 1:
        names = tuple(name for name in names if GATES[name].n_wires == 1)
    ops, params = [], 0
    for _ in range(count):
        name = names[rng.integers(len(names))]
        if name == "H":
            ops += [Op("H", (int(w),)) for w in rng.permutation(n)]
            continue
        wires = tuple(int(w) for w in rng.choice(n, GATES[name].n_wires, replace=False))
        param = None
        if GATES[name].parametrized:
            if params and rng.random() < 0.2:
                param = (int(rng.integers(params)),)
            else:
                param, params = (params,), params + 1
        ops.append(Op(name, wires, param))
    return ops, (max(params, 1),)


def _dense_unitary(n: int, ops, weights: np.ndarray) -> np.ndarray:
    u = np.eye(2**n, dtype=complex)
    for op in ops:
        u = gate_matrix(op, weights, n) @ u
    return u


def _hadamard(n: int) -> np.ndarray:
    h = np.array([[1.0, 1.0], [1.0, -1.0]]) / np.sqrt(2)
    out = np.eye(1)
    for _ in range(n):
        out = np.kron(out, h)
    return out


def _built_unitary(frame, weights: np.ndarray) -> np.ndarray:
    """[H·diag(e^{iΦ_K})]·…·[H·diag(e^{iΦ_1})]·[H]·Q from the frame and its tables."""
    n, dim = frame.n, 2**frame.n
    cos, sin = walsh.phase_tables(frame, weights.reshape(-1), np.float64, kernels.Lease())
    u = np.zeros((dim, dim), dtype=complex)
    u[frame.tau, np.arange(dim)] = 1  # amplitude i goes to row τ(i)
    if frame.leading_transform:
        u = _hadamard(n) @ u
    for k in range(len(frame.segments)):
        # the tables carry the unnormalised transforms' 2^(−n/2) each (two on the first
        # one after a leading transform)
        factor = 2 ** (n / 2) * (2 ** (n / 2) if k == 0 and frame.leading_transform else 1)
        u = _hadamard(n) @ np.diag((cos[k] + 1j * sin[k]) * factor) @ u
    return u


@pytest.mark.parametrize("names", [("RX", "RX", "X", "CNOT"), _ALL_GATES])
@pytest.mark.parametrize(("n", "count", "seed"), [(1, 5, 0), (2, 6, 1), (3, 14, 2), (4, 25, 3)])
def test_frame_is_the_circuit_up_to_a_final_phase(n, count, seed, names):
    # The frame drops the phase after its last transform (it commutes with ⟨Z⟩): the
    # built matrix is diag(e^{iα})·U, every row of it U's row times one phase.
    ops, shape = _frame_circuit(n, count, seed, names)
    weights = np.random.default_rng(seed).uniform(0, 6.3, shape)
    frame = walsh.hadamard_frame(tuple(ops), n, shape)
    assert frame is not None
    assert sorted(frame.tau) == list(range(2**n))
    built, exact = _built_unitary(frame, weights), _dense_unitary(n, ops, weights)
    np.testing.assert_allclose(np.abs(built), np.abs(exact), atol=1e-12)
    for row_built, row_exact in zip(built, exact, strict=True):
        k = np.argmax(np.abs(row_exact))
        phase = row_built[k] / row_exact[k]
        np.testing.assert_allclose(row_built, phase * row_exact, atol=1e-12)


def test_templates_take_two_transforms_per_rotation_column():
    from qhead.quantum.ansatz import build_ansatz

    def frame(name, layers, **options):
        ansatz = build_ansatz(name, **options)
        return walsh.hadamard_frame(tuple(ansatz.ops(layers, 6)), 6, ansatz.shape(layers, 6))

    basic = frame("basic-entangler", 4)  # RX and CNOTs: H·phase·H·Q at any depth
    assert basic.leading_transform and len(basic.segments) == 1
    strong = frame("strongly-entangling", 3)  # Rot = RZ·RY·RZ: an RY column per layer
    assert not strong.leading_transform and len(strong.segments) == 6
    # H on every wire, then RY·RZ and CNOTs per layer: the H column changes the frame
    # for free, the first S† needs the first transform (on the real state)
    entangling = frame("ansatz2", 3)
    assert entangling.leading_transform and len(entangling.segments) == 6
    assert walsh.worth_it(basic) and walsh.worth_it(strong)
    # RY columns between CZ rows: more transforms than the gate-by-gate kernel's passes
    assert not walsh.worth_it(frame("simplified-two-design", 3))


@pytest.mark.parametrize(
    "ops",
    [
        [],
        [Op("H", (0,)), Op("RX", (1,), (0,))],
        [Op("RX", (0,), (0,)), Op("H", (1,))],
        # diagonal gates and permutations only: no transform, nothing for a phase to do
        [Op("RZ", (0,), (0,)), Op("CNOT", (0, 1)), Op("CZ", (1, 0)), Op("X", (1,))],
    ],
)
def test_frame_refuses_other_gates_and_circuits_without_a_transform(ops):
    assert walsh.hadamard_frame(tuple(ops), 2, (1,)) is None


@pytest.fixture
def any_frame(monkeypatch):
    """Every circuit the frame takes runs on the Hadamard-frame kernel, whether or not it
    is the cheaper one (:func:`walsh.worth_it`)."""
    monkeypatch.setattr(walsh, "worth_it", lambda frame: True)


@pytest.mark.parametrize("names", [("RX", "RX", "X", "CNOT"), _ALL_GATES])
@pytest.mark.parametrize("batch", [1, 3, 19, 37])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n", [3, 7])
@pytest.mark.parametrize("lanes", [8, 16])
def test_walsh_kernel_matches_the_reference_in_every_group_of_rows(
    batch, threads, n, lanes, names, monkeypatch, any_frame
):
    # Groups of 16 and 8 rows and the power-of-two rest (19 = 16 + 2 + 1), each thread's
    # share of ∂L/∂Φ summed, an all-zero row (|0…0⟩, zero gradient), features shorter
    # than 2^n (padding) and a subset of wires measured; one segment after a leading
    # transform (RX, X, CNOT) and many segments (every gate).
    monkeypatch.setattr(kernels, "LANES", lanes)
    ops, shape = _frame_circuit(n, 6 * n, n + batch, names)
    wires = (0, n // 2, n - 1)
    assert cpu_kernels.kernel_for(compile_plan(tuple(ops), n, wires, shape)) == "walsh"
    results = kernels_match_reference(n, ops, wires, shape, batch, threads)
    assert torch.all(results["cpu-kernels"][1][batch // 2] == 0)


@pytest.mark.parametrize("names", [("RX", "RX", "X", "CNOT"), _ALL_GATES])
@pytest.mark.parametrize("n", [1, 2, 5])
def test_walsh_kernel_passes_gradcheck(n, names, any_frame):
    ops, shape = _frame_circuit(n, 4 * n + 2, 10 + n, names)
    g = torch.Generator().manual_seed(n)
    weights = (torch.rand(shape, generator=g, dtype=torch.float64) * 6.3).requires_grad_()
    features = torch.randn(3, max(1, 2**n - 1), generator=g, dtype=torch.float64)
    features.requires_grad_()
    wires = tuple(range(n))
    assert cpu_kernels.kernel_for(compile_plan(tuple(ops), n, wires, shape)) == "walsh"

    def f(x, w):
        return run_encoded_circuit(x, n, ops, w, wires, simulator="cpu-kernels")

    assert torch.autograd.gradcheck(f, (features, weights))


@pytest.mark.parametrize(("names", "count"), [(("RX", "RX", "X", "CNOT"), 150), (_ALL_GATES, 60)])
def test_float32_walsh_kernel_agrees_with_float64_reference(names, count, any_frame):
    # float32 phase tables come from float32 trigonometry after a float64 reduction to
    # [−π, π]: large angles (many rotations on one parity) must not lose accuracy; nor
    # may a float32 state through many segments.
    n = 12
    ops, shape = _frame_circuit(n, count, 9, names)
    assert len(walsh.hadamard_frame(tuple(ops), n, shape).segments) > (5 if count == 60 else 0)
    fast, exact = float32_kernels_and_float64_reference(n, ops, shape, 60, 9)
    torch.testing.assert_close(fast, exact, atol=2e-5, rtol=0)


def test_which_templates_take_the_walsh_kernel():
    from qhead.quantum.ansatz import build_ansatz

    def kind(name, layers=3, **options):
        ansatz = build_ansatz(name, **options)
        ops = tuple(ansatz.ops(layers, 6))
        return cpu_kernels.kernel_for(compile_plan(ops, 6, tuple(range(6)),
                                                   ansatz.shape(layers, 6)))

    assert kind("basic-entangler") == "walsh"
    # two segments per RY column, against real matrices on a real state gate by gate
    assert kind("basic-entangler", rotation="RY") == "general"
    assert kind("strongly-entangling") == "walsh"
    assert kind("simplified-two-design") == "general"
    assert kind("ansatz2") == "walsh"  # its first H on every wire: a free change of frame
    assert kind("ansatz2", layers=1) == "layer"  # one real layer: no transform beats it


def test_rows_the_walsh_kernel_declines_take_the_torch_plan(any_frame):
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
def test_walsh_backward_may_run_on_another_thread_count(forward_threads, backward_threads,
                                                       any_frame):
    n, batch = 6, 37
    ops, shape = _frame_circuit(n, 30, 5, _ALL_GATES)
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


def test_walsh_backward_is_reproducible_and_features_changed_in_place_are_an_error(any_frame):
    n = 5
    ops, shape = _frame_circuit(n, 20, 6, _ALL_GATES)
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


def test_circuits_without_a_transform_take_the_general_kernel():
    # CNOT, X, CZ, Z and RZ only: ⟨Z⟩ is the permuted encoding's, no angle reaches it.
    n = 3
    ops = [Op("CNOT", (0, 1)), Op("X", (2,)), Op("RZ", (1,), (0,)), Op("CZ", (2, 0)),
           Op("Z", (1,))]
    assert cpu_kernels.kernel_for(compile_plan(tuple(ops), n, (0, 1, 2), (1,))) == "general"
    weights = torch.ones(1, dtype=torch.float64)
    features = torch.randn(4, 8, dtype=torch.float64)
    upstream = torch.randn(4, 3, dtype=torch.float64)
    results = outputs_and_gradients(features, weights, n, ops, (0, 1, 2), upstream)
    for fast, slow in zip(results["cpu-kernels"], results["torch"], strict=True):
        torch.testing.assert_close(fast, slow, atol=1e-12, rtol=1e-10)


def test_the_dropped_final_phase_gives_exactly_zero_gradients():
    # strongly-entangling's last RZ(ω) commute with ⟨Z⟩: their gradient is 0 (the torch
    # reference gives rounding noise), every other angle's is the reference's.
    from qhead.quantum.ansatz import build_ansatz

    ansatz, n = build_ansatz("strongly-entangling"), 4
    ops, shape = tuple(ansatz.ops(2, n)), ansatz.shape(2, n)
    assert cpu_kernels.kernel_for(compile_plan(ops, n, tuple(range(n)), shape)) == "walsh"
    g = torch.Generator().manual_seed(3)
    weights = torch.rand(shape, generator=g, dtype=torch.float64) * 6.3
    features = torch.randn(5, 2**n, generator=g, dtype=torch.float64)
    upstream = torch.randn(5, n, generator=g, dtype=torch.float64)
    results = outputs_and_gradients(features, weights, n, ops, tuple(range(n)), upstream)
    fast, slow = results["cpu-kernels"][2], results["torch"][2]
    assert torch.all(fast[-1, :, 2] == 0)  # Rot(φ, θ, ω): ω of the last layer
    assert torch.all(fast[:-1].abs() > 0)
    torch.testing.assert_close(fast, slow, atol=1e-12, rtol=1e-10)


def test_a_forward_without_gradients_keeps_two_states_and_gives_the_same_outputs(monkeypatch):
    from qhead.quantum.ansatz import build_ansatz

    ansatz, n = build_ansatz("strongly-entangling"), 5
    ops, shape = tuple(ansatz.ops(3, n)), ansatz.shape(3, n)
    g = torch.Generator().manual_seed(5)
    weights = torch.rand(shape, generator=g, dtype=torch.float64) * 6.3
    features = torch.randn(19, 2**n - 3, generator=g, dtype=torch.float64)
    features[4] = 0  # an all-zero row: |τ(0)⟩
    reference = run_encoded_circuit(features, n, ops, weights, range(n), simulator="torch")
    with_grad = run_encoded_circuit(features, n, ops, weights.requires_grad_(True), range(n),
                                    simulator="cpu-kernels")
    kept = []
    original = kernels.walsh_forward

    def spy(*args, **kwargs):
        result = original(*args, **kwargs)
        kept.append((kwargs.get("keep", True), result[1]))
        return result

    monkeypatch.setattr(kernels, "walsh_forward", spy)
    with torch.no_grad():
        without = run_encoded_circuit(features, n, ops, weights, range(n),
                                      simulator="cpu-kernels")
    assert [keep for keep, _ in kept] == [False] and kept[0][1] is None
    assert torch.equal(without, with_grad.detach())  # the same arithmetic, slots reused
    torch.testing.assert_close(without, reference, atol=1e-12, rtol=1e-10)
    # Nothing asks for gradients even with grad mode on: no states either.
    kept.clear()
    run_encoded_circuit(features, n, ops, weights.detach(), range(n), simulator="cpu-kernels")
    assert [keep for keep, _ in kept] == [False]


def test_a_batch_whose_saved_states_exceed_the_cap_takes_the_general_kernel(monkeypatch):
    from qhead.quantum.ansatz import build_ansatz

    ansatz, n = build_ansatz("strongly-entangling"), 5
    ops, shape = tuple(ansatz.ops(3, n)), ansatz.shape(3, n)
    frame = walsh.hadamard_frame(ops, n, shape)
    # 6 segments: 13 states of 32 values per example, 8 bytes each
    assert frame.saved_bytes(7, 8) == 13 * 7 * 32 * 8
    g = torch.Generator().manual_seed(4)
    weights = torch.rand(shape, generator=g, dtype=torch.float64) * 6.3
    features = torch.randn(7, 2**n, generator=g, dtype=torch.float64)
    upstream = torch.randn(7, n, generator=g, dtype=torch.float64)
    expected = outputs_and_gradients(features, weights, n, ops, range(n), upstream)["torch"]

    def refuse(*args):
        raise AssertionError("the Hadamard-frame kernel ran")

    monkeypatch.setattr(walsh, "MAX_SAVED_BYTES", frame.saved_bytes(7, 8) - 1)
    monkeypatch.setattr(walsh, "forward", refuse)
    got = outputs_and_gradients(features, weights, n, ops, range(n), upstream,
                                names=("cpu-kernels",))["cpu-kernels"]
    for fast, slow in zip(got, expected, strict=True):
        torch.testing.assert_close(fast, slow, atol=1e-12, rtol=1e-10)
