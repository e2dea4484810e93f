"""The compiled CPU kernels against the torch implementation they replace.

The torch code (kernels switched off) is itself checked against a dense reference and
PennyLane elsewhere; here every fused path must give the same values and gradients,
for float32 and float64, odd sizes, padding, wire subsets and the special rows.
"""

import contextlib
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from qhead.quantum import ANSATZES
from qhead.simulator import (
    amplitude_encode,
    kernels,
    num_qubits,
    run_circuit,
    run_encoded_circuit,
    z_and_x,
)

pytestmark = [
    pytest.mark.skipif(not kernels.available(), reason="numba is not installed"),
    pytest.mark.filterwarnings("ignore::qhead.quantum.CircuitLintWarning"),
]

TOL = {torch.float32: 2e-6, torch.float64: 1e-12}


@contextlib.contextmanager
def kernels_off():
    previous = kernels.set_enabled(False)
    try:
        yield
    finally:
        kernels.set_enabled(previous)


def circuit(name, layers, n, **options):
    ansatz = ANSATZES.get(name)(**options)
    ops = ansatz.ops(layers, n)
    weights = torch.rand(ansatz.shape(layers, n), dtype=torch.float64) * 6.3
    return ops, weights


def values_and_grads(fn, features, weights):
    features = features.clone().requires_grad_(True)
    weights = weights.clone().requires_grad_(True)
    out = fn(features, weights)
    cotangent = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    grads = torch.autograd.grad((out * cotangent).sum(), (features, weights))
    return out.detach(), grads


def assert_same(a, b, dtype):
    torch.testing.assert_close(a, b, atol=TOL[dtype], rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [3, 4, 6, 9])
def test_z_and_x_kernel_matches_torch(n, dtype):
    gen = torch.Generator().manual_seed(n)
    state = torch.randn(5, 2**n, dtype=dtype, generator=gen)
    state /= state.norm(dim=1, keepdim=True)
    wires = [n - 1, 0, n // 2]
    cotangent = torch.randn(5, 2 * len(wires), dtype=dtype, generator=gen)
    assert kernels.usable(state)

    def run():
        psi = state.clone().requires_grad_(True)
        out = torch.cat(z_and_x(psi.view([5] + [2] * n), wires), 1)
        (grad,) = torch.autograd.grad((out * cotangent).sum(), psi)
        return out.detach(), grad

    fused = run()
    with kernels_off():
        plain = run()
    assert_same(fused[0], plain[0], dtype)
    assert_same(fused[1], plain[1], dtype)


CASES = [
    # name, layers, options, n_features, measured wires (None = all)
    ("ansatz1", 1, {}, 25, None),
    ("ansatz1", 3, {}, 64, [5, 0, 2]),
    ("ansatz1", 2, {"gate": "RX"}, 9, None),
    ("ansatz1", 1, {"gate": "RZ"}, 300, [8, 1]),
    ("ansatz2", 1, {}, 25, None),
    ("ansatz2", 1, {"entangler": "ring"}, 100, [6, 0, 3]),
    ("ansatz2", 1, {"gates": ("RY", "RY")}, 8, None),
    ("ansatz2", 2, {}, 20, None),  # D ≥ 2: the Hadamard-frame kernel
    ("ansatz2", 3, {"entangler": "ring"}, 100, [6, 0, 3]),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("name", "layers", "options", "n_features", "measured"), CASES)
def test_fused_circuits_match_the_unfused_composition(
    name, layers, options, n_features, measured, dtype
):
    n = num_qubits(n_features)
    ops, weights = circuit(name, layers, n, **options)
    wires = list(range(n)) if measured is None else measured
    gen = torch.Generator().manual_seed(1)
    features = torch.randn(6, n_features, dtype=torch.float64, generator=gen)
    features[2] = 0  # an all-zero row: |0…0⟩ and a zero gradient on both paths
    features, weights = features.to(dtype), weights.to(dtype)

    def fused(x, w):
        return run_encoded_circuit(x, n, ops, w, wires)

    def plain(x, w):
        return run_circuit(amplitude_encode(x, n), ops, w, wires)

    ours = values_and_grads(fused, features, weights)
    with kernels_off():
        theirs = values_and_grads(plain, features, weights)
    assert_same(ours[0], theirs[0], dtype)
    for a, b in zip(ours[1], theirs[1], strict=True):
        assert_same(a, b, dtype)
    assert torch.equal(ours[1][0][2], torch.zeros(n_features, dtype=dtype))


def counting(monkeypatch):
    calls = {"zx": 0, "layer": 0}
    for key, name in (("zx", "encoded_zx_forward"), ("layer", "encoded_layer_forward")):
        original = getattr(kernels, name)

        def wrapper(*args, _original=original, _key=key):
            calls[_key] += 1
            return _original(*args)

        monkeypatch.setattr(kernels, name, wrapper)
    return calls


@pytest.mark.parametrize(
    ("name", "layers", "kernel"),
    [("ansatz1", 1, "zx"), ("ansatz1", 3, "zx"), ("ansatz2", 1, "layer"), ("ansatz2", 2, None)],
)
def test_the_paper_circuits_take_the_kernels(monkeypatch, name, layers, kernel):
    from qhead.quantum import AEVQC

    calls = counting(monkeypatch)
    layer = AEVQC(200, name, layers)
    layer(torch.randn(3, 200)).sum().backward()
    expected = {"zx": 0, "layer": 0}
    if kernel:
        expected[kernel] = 1
    assert calls == expected


def test_fused_paths_pass_gradcheck(monkeypatch):
    calls = counting(monkeypatch)
    for name, options in (("ansatz1", {}), ("ansatz2", {"entangler": "ring"})):
        ops, weights = circuit(name, 1, 3, **options)
        features = torch.randn(2, 7, dtype=torch.float64).requires_grad_(True)
        torch.autograd.gradcheck(
            lambda x, w, ops=ops: run_encoded_circuit(x, 3, ops, w, [0, 2]),
            (features, weights.requires_grad_(True)),
        )
    assert calls["zx"] > 0 and calls["layer"] > 0


@pytest.mark.parametrize("name", ["ansatz1", "ansatz2"])
def test_rows_the_kernels_decline_take_the_torch_encoder(monkeypatch, name):
    ops, weights = circuit(name, 1, 5)
    features = torch.rand(3, 30) + 0.1
    scaled = features.clone()
    scaled[1] *= 1e31  # its sum of squares is beyond the kernels' range
    calls = counting(monkeypatch)
    out = run_encoded_circuit(scaled, 5, ops, weights.float(), range(5))
    assert sum(calls.values()) == 1  # tried, declined, answered by the torch path
    expected = run_encoded_circuit(features, 5, ops, weights.float(), range(5))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    bad = features.clone()
    bad[2, 4] = float("nan")
    with pytest.raises(ValueError, match=r"row\(s\) 2 "):
        run_encoded_circuit(bad, 5, ops, weights.float(), range(5))


def test_splitting_the_batch_over_threads_changes_no_bit(monkeypatch):
    ops, weights = circuit("ansatz2", 1, 7)
    features = torch.randn(5, 100)
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        split = values_and_grads(
            lambda x, w: run_encoded_circuit(x, 7, ops, w, range(7)), features, weights.float()
        )
        monkeypatch.setattr(kernels, "_threads", lambda batch: 1)
        whole = values_and_grads(
            lambda x, w: run_encoded_circuit(x, 7, ops, w, range(7)), features, weights.float()
        )
    finally:
        torch.set_num_threads(threads)
    # Each row is computed the same way whatever the chunk it lands in; only the weight
    # gradient, a sum over rows, adds its per-chunk partial sums in another order.
    assert torch.equal(split[0], whole[0])
    assert torch.equal(split[1][0], whole[1][0])
    torch.testing.assert_close(split[1][1], whole[1][1], atol=1e-6, rtol=1e-6)


def test_backward_can_run_twice_with_retain_graph():
    ops, weights = circuit("ansatz2", 1, 6)
    features = torch.randn(4, 50, requires_grad=True)
    weights = weights.float().requires_grad_(True)
    out = run_encoded_circuit(features, 6, ops, weights, range(6))
    out.sum().backward(retain_graph=True)
    first = features.grad.clone(), weights.grad.clone()
    out.sum().backward()
    torch.testing.assert_close(features.grad, 2 * first[0])
    torch.testing.assert_close(weights.grad, 2 * first[1])


@pytest.mark.parametrize("n", [4, 7])
def test_a_repeated_backward_gives_the_same_bits_wherever_the_pool_buffers_lie(n):
    # The adjoint steps reduce while they store; vectorised or not (a runtime overlap
    # check between the scratch arrays) they sum in different orders. Shuffling the
    # pool's idle buffers between two backward passes moved the scratch arrays relative
    # to each other, and the phase gradients changed in their last bits.
    ops, weights = circuit("strongly-entangling", 2, n)
    weights.requires_grad_(True)
    features = torch.randn(3, 2**n - 2, dtype=torch.float64, requires_grad=True)
    out = run_encoded_circuit(features, n, ops, weights, range(n))
    cotangent = torch.randn_like(out)
    first = torch.autograd.grad(out, (features, weights), cotangent, retain_graph=True)
    rng = np.random.default_rng(0)
    sizes = [2**n, 2 * 2**n, 4 * 2**n, 16 * 2**n]
    for _ in range(12):
        taken = [kernels._BUFFERS.take(int(rng.choice(sizes)), np.float64) for _ in range(10)]
        for index in rng.permutation(len(taken)):
            kernels._BUFFERS.give(taken[index])
        again = torch.autograd.grad(out, (features, weights), cotangent, retain_graph=True)
        assert torch.equal(again[0], first[0])
        assert torch.equal(again[1], first[1])


def test_the_buffer_pool_frees_the_least_recently_returned_buffers_first():
    # A pool that refused buffers once full kept the shapes of earlier calls for good.
    pool = kernels._BufferPool(max_idle_bytes=3 * 100 * 8)
    old = [pool.take(100, np.float64) for _ in range(3)]
    for buffer in old:
        pool.give(buffer)
    newer = pool.take(50, np.float64)
    pool.give(newer)  # over the cap: old[0], the least recently returned, goes
    assert pool.take(50, np.float64) is newer
    assert pool.take(100, np.float64) is old[2]
    assert pool.take(100, np.float64) is old[1]
    fresh = pool.take(100, np.float64)
    assert all(fresh is not buffer for buffer in old)
    assert pool.take(100, np.float32).dtype == np.float32  # the dtype is part of the key
    pool.give(np.empty(1000))  # larger than the cap: not kept
    assert pool.clear() == 0


def test_large_pool_buffers_are_writable_huge_page_aligned_and_small_ones_plain():
    import mmap

    large = kernels._BufferPool(1 << 30).take(3 << 20, np.float32)  # 12 MiB
    assert large.shape == (3 << 20,) and large.dtype == np.float32
    large[:] = 2.0
    large[-1] = 5.0
    assert float(large.sum(dtype=np.float64)) == 2.0 * ((3 << 20) - 1) + 5.0
    if hasattr(mmap, "MADV_HUGEPAGE") and hasattr(mmap, "MAP_ANONYMOUS"):
        assert large.ctypes.data % kernels._HUGE_PAGE == 0
        assert isinstance(large.base.base.obj, mmap.mmap)  # the array keeps its mapping
    small = kernels._empty(1000, np.float64)
    assert small.shape == (1000,) and small.base is None  # below 2 MiB: np.empty


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_register_tile_scatter_and_gather_match_numpy(dtype):
    import numba

    rng = np.random.default_rng(3)
    n_feat, dim = 64, 128
    parent = rng.standard_normal((20, n_feat + 5)).astype(dtype)
    feats = parent[2:18, 3 : 3 + n_feat]  # rows strided as in a batch's chunk
    scale, shift = rng.random(16).astype(dtype), rng.random(16).astype(dtype)
    rows = rng.permutation(dim).astype(np.int64)

    @numba.njit
    def scatter(feats, scale, state, rows):
        for j0 in range(0, feats.shape[1], 16):
            kernels._scatter_tile(feats, j0, scale, state, rows)

    @numba.njit
    def gather(grad, feats, lam, shift, scale, rows):
        for j0 in range(0, feats.shape[1], 16):
            kernels._gather_tile(grad, feats, lam, j0, shift, scale, rows)

    state = np.full(dim * 16, -7.0, dtype)
    scatter(feats, scale, state, rows)
    lanes = state.reshape(dim, 16)
    np.testing.assert_array_equal(lanes[rows[:n_feat]], (feats * scale[:, None]).T)
    assert (lanes[rows[n_feat:]] == -7.0).all()  # rows no feature lands in are untouched

    lam = rng.standard_normal(dim * 16).astype(dtype)
    grad = np.zeros((16, n_feat), dtype)
    gather(grad, feats, lam, shift, scale, rows)
    expected = (lam.reshape(dim, 16)[rows[:n_feat]].T - shift[:, None] * feats) * scale[:, None]
    np.testing.assert_allclose(grad, expected, rtol=1e-6 if dtype == np.float32 else 1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_register_blocks_of_the_frame_backward_match_numpy(dtype):
    # The Hadamard-frame kernel's per-amplitude sums over 16 lanes, 16 amplitudes at a
    # time in registers (lane layout: value [j·16 + l] is amplitude j of example l).
    import numba

    rng = np.random.default_rng(5)
    dim = 64
    pr, pi, mr, mi, w = (rng.standard_normal(dim * 16).astype(dtype) for _ in range(5))
    angle = rng.uniform(-np.pi, np.pi, dim)
    cos, sin = np.cos(angle).astype(dtype), np.sin(angle).astype(dtype)

    @numba.njit
    def phase_gradient(pr, pi, mr, mi, cos, sin, out):
        kernels._unphase_gradient_blocks(pr, pi, mr, mi, cos, sin, out)

    @numba.njit
    def unphase(w, mr, mi, rho, cos, sin, out, dots, butterfly):
        kernels._unphase_blocks(w, mr, mi, rho, cos, sin, out, dots, butterfly)

    def lanes(a):
        return a.astype(np.float64).reshape(dim, 16)

    def butterflies(values):
        """The two lowest butterfly levels: H ⊗ H on the index bits 1 and 0."""
        h2 = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]])
        return np.einsum("st,qtl->qsl", h2, values.reshape(dim // 4, 4, 16)).reshape(dim, 16)

    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12}
    start = rng.standard_normal(dim)  # the sums are added to what the output holds
    out = start.copy()
    mu = lanes(mr) + 1j * lanes(mi)
    turned_r, turned_i = mr.copy(), mi.copy()
    phase_gradient(pr, pi, turned_r, turned_i, cos, sin, out)
    c, s = cos.astype(np.float64)[:, None], sin.astype(np.float64)[:, None]
    v = (lanes(pr) + 1j * lanes(pi)) * np.exp(1j * angle)[:, None]  # e^{iΦ}·p
    np.testing.assert_allclose(out - start, (np.conj(mu) * 1j * v).real.sum(1), **tol)
    # μ turned back through the phase, then the two lowest butterfly levels (amplitudes
    # 4q … 4q + 3: H ⊗ H on bits 1 and 0).
    expected = butterflies(mu * np.exp(-1j * angle)[:, None])
    np.testing.assert_allclose(lanes(turned_r), expected.real, **tol)
    np.testing.assert_allclose(lanes(turned_i), expected.imag, **tol)

    expected_rho = lanes(mr) * c + lanes(mi) * s
    for butterfly, rho_then in ((False, expected_rho), (True, butterflies(expected_rho))):
        out = start.copy()
        rho = np.full(dim * 16, np.nan, dtype)
        dots = np.full(16, np.nan, dtype)
        unphase(w, mr, mi, rho, cos, sin, out, dots, butterfly)
        np.testing.assert_allclose(lanes(rho), rho_then, **tol)
        np.testing.assert_allclose(
            out - start, (lanes(w) * (lanes(mi) * c - lanes(mr) * s)).sum(1), **tol)
        np.testing.assert_allclose(dots, (lanes(w) * expected_rho).sum(0), **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [5, 6])
def test_the_measured_top_level_matches_a_transform_then_the_z_folds(n, dtype):
    import numba

    rng = np.random.default_rng(n)
    dim = 2**n
    re, im = (rng.standard_normal(dim * 16).astype(dtype) for _ in range(2))

    @numba.njit
    def measured(re, im, p, q, n, acc, z):
        kernels._measured_top_level(re, im, p, q, n, acc, z)

    z = np.full((16, n), np.nan, dtype)
    out_re, out_im = re.copy(), im.copy()
    measured(out_re, out_im, np.empty_like(re), np.empty_like(re), n, np.empty(16, dtype), z)
    # The top butterfly level (bit n − 1: amplitudes j and j + 2^(n−1)), then ⟨Z_k⟩ of
    # the unnormalised state: Σ_j |ψ_j|²·(1 − 2·bit_k(j)), wire 0 the top bit.
    psi = (re + 1j * im).astype(np.complex128).reshape(2, dim // 2, 16)
    psi = np.concatenate([psi[0] + psi[1], psi[0] - psi[1]])
    np.testing.assert_allclose(out_re.reshape(dim, 16), psi.real, rtol=1e-6)
    np.testing.assert_allclose(out_im.reshape(dim, 16), psi.imag, rtol=1e-6)
    bits = (np.arange(dim)[:, None] >> (n - 1 - np.arange(n))) & 1
    expected = (np.abs(psi) ** 2).T @ (1 - 2 * bits)
    tol = {"rtol": 1e-5, "atol": 1e-4} if dtype == np.float32 else {"rtol": 1e-12}
    np.testing.assert_allclose(z, expected, **tol)


def test_enabling_without_numba_is_an_error(monkeypatch):
    monkeypatch.setattr(kernels, "numba", None)
    with pytest.raises(RuntimeError, match="pip install numba"):
        kernels.set_enabled(True)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "True PASSIVE"),
        ({"QHEAD_CPU_KERNELS": "0", "OMP_WAIT_POLICY": "ACTIVE"}, "False ACTIVE"),
    ],
)
def test_environment_switches(env, expected):
    code = (
        "import os, qhead; from qhead.simulator import kernels; "
        "print(kernels.enabled(), os.environ['OMP_WAIT_POLICY'])"
    )
    ours = ("QHEAD_CPU_KERNELS", "OMP_WAIT_POLICY")
    clean = {k: v for k, v in os.environ.items() if k not in ours}
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert result.stdout.split("\n")[-2] == expected


def test_kernel_results_are_numpy_free_tensors_of_the_input_dtype():
    for dtype in (torch.float32, torch.float64):
        z, x, norms = kernels.encoded_zx_forward(torch.rand(2, 10, dtype=dtype), 4)
        assert z.dtype == x.dtype == dtype and z.shape == x.shape == (2, 4)
        assert isinstance(norms, np.ndarray) and (norms > 0).all()


@pytest.mark.skipif(not kernels.available(), reason="numba is not installed")
@pytest.mark.parametrize(
    ("first", "env", "warns"),
    [("torch", {}, True), ("qhead", {}, False)],
)
def test_torch_imported_first_without_a_wait_policy_warns_once(first, env, warns):
    """Issue 12 item 6: the kernels' speed depends on torch's OpenMP wait policy, which
    only ``import qhead`` before ``import torch`` (or the environment) can set."""
    second = "qhead" if first == "torch" else "torch"
    code = (
        f"import {first}, {second}, warnings, torch\n"
        "from qhead.simulator import Op, run_encoded_circuit\n"
        "torch.set_num_threads(2)\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    for _ in range(2):\n"
        "        run_encoded_circuit(torch.randn(8, 16), 4, [Op('RY', (0,), (0,))],\n"
        "                            torch.rand(1), (0, 1))\n"
        "print(sum('OMP_WAIT_POLICY=PASSIVE' in str(w.message) for w in caught))\n"
    )
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY",)}
    result = subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
        check=True, timeout=120,
    )
    assert result.stdout.split("\n")[-2] == ("1" if warns else "0")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_runs_the_kernels_with_a_fresh_buffer_pool():
    import signal
    import time

    ops, weights = circuit("strongly-entangling", 2, 6)
    features = torch.randn(3, 64)
    expected = run_encoded_circuit(features, 6, ops, weights.float(), range(6))
    kernels._BUFFERS._lock.acquire()  # as if another thread held it when the fork happened
    try:
        pid = os.fork()
        if pid == 0:  # the child: a fresh lock and pool, the same numbers
            code = 1
            try:
                signal.alarm(60)  # a deadlocked child must not outlive the test
                out = run_encoded_circuit(features, 6, ops, weights.float(), range(6))
                code = 0 if torch.equal(out, expected) else 2
            finally:
                os._exit(code)
    finally:
        kernels._BUFFERS._lock.release()
    deadline = time.monotonic() + 60
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if done[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung on the kernels' buffer pool")
    assert os.waitstatus_to_exitcode(done[1]) == 0
