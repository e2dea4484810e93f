"""Where the general CPU kernel's time goes: cost per instruction kind, and per ansatz.

Batch 32, n = 15 qubits, float32, the kernel called directly
(:func:`qhead.simulator.kernels.general_forward` / ``general_backward``, no autograd).
Times are this process's CPU time (both threads together; wall time on this shared VM
moved up to 30 % between processes, CPU time a few per cent), minimum over ``--repeats``.

1. **Unit costs.** The fixed cost of a call (encoding, lane conversions, measurement,
   the encoding's backward) for a real program and for one with a single phase, then the
   cost of one more instruction of each kind on a complex state (ten of them, minus the
   fixed cost, divided by ten): a real 2×2 matrix on a high, middle and each of the three
   lowest wires, a phase, the CNOT-ring permutation of ``strongly-entangling`` and a
   random one; then a matrix, a sign vector and the permutation on a real state (before
   a program's first complex instruction: one array instead of two). The ratio column
   compares each with the real matrix on wire 0, the cheapest pass over the state (it
   reads and writes the state's arrays once, and λ's too backward).
2. **Per ansatz.** Every registered ansatz that runs on the general kernel, D ∈ {1, 3, 5}:
   its program's instructions by kind, the time the unit costs predict (fixed cost plus
   the sum over its instructions, wires 1–11 at wire 7's cost) and the measured time,
   forward + backward; then the same prediction if every instruction cost what a wire-0
   matrix costs on the same kind of state (what the per-kind overheads cost) and if the
   fixed cost were also gone.
3. **What bounds a transform** (``--transform-bound``, alone: the Hadamard frame's kernel
   spends most of its time in Walsh–Hadamard transforms). One thread, the kernel's
   butterfly passes (``kernels._wht_lanes_from``) on 16 rows in its lane layout, for
   n = 9 (32 KiB per array: the size of L1), 11 (128 KiB: in L2) and 15 (2 MiB, the kernel's
   case: more than the core's L2, every pass streams from L3): ns per 16-value vector
   and butterfly level. Equal costs mean the memory is not what bounds the transform:
   the butterflies' additions, loads and stores are.
4. **Where a Hadamard-frame call goes** (``--frame-overhead NAME D``, alone): forward +
   backward at batch 32, one process, the variants alternating, wall ms: the kernels
   (``walsh_forward`` + ``walsh_backward``), with the phase tables and the angle
   gradients (``walsh.forward`` + ``walsh.backward``), as the autograd Function, as
   ``AEVQC`` (``head(x).sum().backward()``), and an autograd Function of the same shapes
   that does nothing (torch's own floor: first in a loop of its own, then between the
   kernel calls); then the kernels on 16 rows with one thread
   against 32 rows with two (what the second core adds).

Usage::

    python benchmarks/kernel_profile.py [--repeats 9] [--layers 1 3 5]
        [--transform-bound] [--frame-overhead strongly-entangling 1]

Read it with ``benchmarks/simulator.py``'s ratios: a circuit reaches 100× default.qubit
only if its forward + backward fits in 1 % of default.qubit's time.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

# qhead before torch: it sets the OpenMP wait policy the CPU kernels need (qhead/__init__.py)
import qhead  # noqa: F401

# isort: split
import numpy as np
import torch

from qhead.engine.runtime import cpu_has_native_bf16
from qhead.memory import keep_freed_memory
from qhead.quantum import AEVQC, ANSATZES, CircuitLintWarning
from qhead.simulator import Op, cpu_kernels, kernels
from qhead.simulator.plan import compile_plan, signed_permutation
from simulator import BATCH, FEATURES, N_QUBITS, cpu_model

OP_REAL, OP_PHASE, OP_PERM = kernels.OP_REAL, kernels.OP_PHASE, kernels.OP_PERM
EXTRA = 10  # instructions added to measure one


class Kernel:
    """The general kernel on fixed inputs, with programs given as instruction lists."""

    def __init__(self, repeats: int):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(BATCH, FEATURES, generator=g)
        self.gz = torch.randn(BATCH, N_QUBITS, generator=g)
        angle = 0.3
        rotation = torch.tensor([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        self.mats = torch.zeros(1, 2, 2, 2)
        self.mats[0, :, :, 0] = rotation
        self.phases = torch.rand(1, N_QUBITS, generator=g)
        ring = tuple(Op("CNOT", (q, (q + 1) % N_QUBITS)) for q in range(N_QUBITS))
        index, _ = signed_permutation(N_QUBITS, ring)
        shuffled = np.random.default_rng(0).permutation(2**N_QUBITS)
        self.perms = np.stack([index.numpy(), shuffled]).astype(np.int64)
        self.signs = np.ones_like(self.perms, dtype=np.float32)
        self.repeats = repeats

    def time(self, rows, first_complex: int = 0, tables=None) -> tuple[float, float]:
        """(forward, backward) CPU ms of the instruction ``rows`` with ``tables`` =
        (mats, perms, signs, phases, phase_grad), by default the synthetic ones above."""
        prog = np.asarray(rows, np.int64).reshape(-1, 3)
        if tables is None:
            tables = (self.mats, self.perms, self.signs, self.phases, None)
        mats, perms, signs, phases, phase_grad = tables

        def forward():
            return kernels.general_forward(self.x, N_QUBITS, prog, first_complex, mats, perms,
                                           signs, phases)

        def backward(saved):
            kernels.general_backward(saved, self.x, N_QUBITS, prog, first_complex, mats,
                                     perms, signs, self.gz, phase_grad)

        for _ in range(2):
            backward(forward()[1])
        fwd, bwd = [], []
        for _ in range(self.repeats):
            start = time.process_time()
            _, saved = forward()
            fwd.append(time.process_time() - start)
            start = time.process_time()
            backward(saved)
            bwd.append(time.process_time() - start)
        return 1e3 * min(fwd), 1e3 * min(bwd)


def unit_costs(kernel: Kernel) -> dict[str, tuple[float, float]]:
    """CPU ms per instruction kind (forward, backward), plus the two fixed costs."""
    phase = (OP_PHASE, 0, 0)
    costs = {"fixed, real program": kernel.time([], first_complex=0),
             "fixed, complex program": kernel.time([phase])}
    base = costs["fixed, complex program"]
    extra = {
        **{f"real matrix, wire {w}": (OP_REAL, w, 0) for w in (0, 7, 12, 13, 14)},
        "phase": phase,
        "permutation, CNOT ring": (OP_PERM, 0, 0),
        "permutation, random": (OP_PERM, 0, 1),
    }
    for label, row in extra.items():
        f, b = kernel.time([phase] + [row] * EXTRA)
        costs[label] = ((f - base[0]) / EXTRA, (b - base[1]) / EXTRA)
    # the same on a real state (programs before their first complex instruction)
    base = costs["fixed, real program"]
    real_state = {
        **{f"real state: real matrix, wire {w}": (OP_REAL, w, 0) for w in (0, 7, 14)},
        "real state: sign vector": (kernels.OP_SIGN, 0, 0),
        "real state: permutation, CNOT ring": (OP_PERM, 0, 0),
    }
    for label, row in real_state.items():
        f, b = kernel.time([row] * EXTRA, first_complex=EXTRA)
        costs[label] = ((f - base[0]) / EXTRA, (b - base[1]) / EXTRA)
    return costs


def instruction_cost(costs, kind: int, wire: int, real_state: bool) -> tuple[float, float]:
    """Unit cost of one program instruction (wires 1–11 at wire 7's cost; a complex
    matrix counted as two real ones, a sign vector on a complex state as a permutation:
    both rare in the registered ansätze)."""
    if real_state:
        if kind in (OP_PERM, kernels.OP_SIGN):
            name = "permutation, CNOT ring" if kind == OP_PERM else "sign vector"
            return costs[f"real state: {name}"]
        return costs[f"real state: real matrix, wire {14 if wire >= 12 else 7}"]
    if kind == OP_PHASE:
        return costs["phase"]
    if kind in (OP_PERM, kernels.OP_SIGN):
        return costs["permutation, CNOT ring"]
    key = f"real matrix, wire {wire}" if wire >= 12 else "real matrix, wire 7"
    f, b = costs[key]
    return (2 * f, 2 * b) if kind == kernels.OP_COMPLEX else (f, b)


def ansatz_rows(kernel: Kernel, costs, layer_counts, threads: int) -> list[str]:
    fixed_real, fixed_complex = costs["fixed, real program"], costs["fixed, complex program"]
    unit = sum(costs["real matrix, wire 0"])
    unit_real = sum(costs["real state: real matrix, wire 0"])
    lines = ["| circuit | instructions (real / complex / phase / perm) | predicted ms | "
             "measured ms | all at wire-0 cost | … and no fixed cost |",
             "|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for name in sorted(ANSATZES.names()):
        for layers in layer_counts:
            head = AEVQC(FEATURES, name, layers)
            plan = compile_plan(tuple(head.ops), head.n_qubits, tuple(head.measured_wires),
                                tuple(head.weights.shape))
            if cpu_kernels.kernel_for(plan) != "general":
                continue
            program = cpu_kernels._program(plan, torch.float32)
            weights = head.weights.detach()
            tables = (program.matrices(weights, torch.float32), program.perms, program.signs,
                      program.phases(weights, torch.float32), program.phase_grad)
            kinds = program.prog[:, 0]
            complex_ = program.first_complex < len(kinds)
            fixed = sum(fixed_complex if complex_ else fixed_real)
            first = program.first_complex
            predicted = fixed + sum(sum(instruction_cost(costs, k, w, g < first))
                                    for g, (k, w, _) in enumerate(program.prog))
            measured = sum(kernel.time(program.prog, program.first_complex, tables))
            on_real = min(first, len(kinds))
            at_unit = fixed + unit_real * on_real + unit * (len(kinds) - on_real)
            counts = " / ".join(str(int(np.isin(kinds, group).sum())) for group in (
                [OP_REAL], [kernels.OP_COMPLEX], [OP_PHASE], [OP_PERM, kernels.OP_SIGN]))
            lines.append(f"| {name} D={layers} | {counts} | {predicted / threads:.1f} | "
                         f"{measured / threads:.1f} | {at_unit / threads:.1f} | "
                         f"{(at_unit - fixed) / threads:.1f} |")
            print(lines[-1], flush=True)
    return lines


def _transform_kernel():
    """The kernel's butterfly passes applied ``count`` times, one numba call."""
    import numba

    passes = kernels._wht_lanes_from

    @numba.njit(nogil=True)
    def repeated(state, n, lanes, count):
        for _ in range(count):
            passes(state, n, lanes, 0)

    return repeated


def transform_bound(repeats: int, lanes: int = 16) -> list[str]:
    """A float32 Walsh–Hadamard transform in the kernel's lane layout, one thread, for
    states that stay in L1, in L2 and (n = 15, the kernel's) stream from L3: ns per
    16-value vector and butterfly level, minimum of ``repeats`` (module docs,
    section 3)."""
    repeated = _transform_kernel()
    lines = ["| n | state (one array) | µs per transform | ns per vector and level |",
             "|---|---|---|---|"]
    for n, count in ((9, 8), (11, 8), (N_QUBITS, 1)):  # a transform scales by 2^n
        original = np.random.default_rng(0).uniform(-1, 1, lanes << n).astype(np.float32)
        work = original.copy()
        repeated(work, n, lanes, 1)  # compile
        best = float("inf")
        for _ in range(repeats):
            np.copyto(work, original)
            start = time.perf_counter()
            repeated(work, n, lanes, count)
            best = min(best, (time.perf_counter() - start) / count)
        vectors = original.size * original.itemsize // 64
        size = f"{original.nbytes >> 10} KiB" if original.nbytes < 1 << 20 else \
            f"{original.nbytes >> 20} MiB"
        lines.append(f"| {n} | {size} | {best * 1e6:.1f} | {best * 1e9 / (vectors * n):.2f} |")
    return lines


class _Floor(torch.autograd.Function):
    """The autograd Function of :func:`frame_overhead` with no work: same shapes."""

    @staticmethod
    def forward(ctx, features, weights):
        ctx.save_for_backward(features)
        ctx.weights_shape = weights.shape
        return features.new_zeros(features.shape[0], N_QUBITS)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gout):
        (features,) = ctx.saved_tensors
        return torch.empty_like(features), gout.new_zeros(ctx.weights_shape)


def _alternating(variants: dict, repeats: int) -> list[str]:
    """Minimum and median wall ms of each variant, called in turn ``repeats`` times."""
    times: dict[str, list[float]] = {label: [] for label in variants}
    for run in variants.values():
        for _ in range(3):
            run()
    for _ in range(repeats):
        for label, run in variants.items():
            start = time.perf_counter()
            run()
            times[label].append((time.perf_counter() - start) * 1e3)
    return [f"| {label} | {min(t):.2f} | {float(np.median(t)):.2f} |"
            for label, t in times.items()]


def frame_overhead(name: str, layers: int, repeats: int) -> list[str]:
    """Section 4 of the module docs, for ansatz ``name`` at depth ``layers``."""
    from qhead.simulator import walsh

    torch.manual_seed(0)
    head = AEVQC(FEATURES, name, layers)
    plan = compile_plan(tuple(head.ops), head.n_qubits, tuple(head.measured_wires),
                        tuple(head.weights.shape))
    if cpu_kernels.kernel_for(plan) != "walsh":
        raise SystemExit(f"{name} D={layers} does not run in the Hadamard frame "
                         f"(kernel: {cpu_kernels.kernel_for(plan)})")
    frame = cpu_kernels._frame(plan)
    x = torch.randn(BATCH, FEATURES)
    leaf = x.clone().requires_grad_()
    flat = leaf.reshape(BATCH, -1)
    weights = head.weights.detach().reshape(-1)
    cos, sin = walsh.phase_tables(frame, weights.to(torch.float64).numpy(), np.float32,
                                  kernels.Lease())
    wires = tuple(head.measured_wires)

    def kernels_only(rows: int = BATCH):
        gz = torch.ones(rows, N_QUBITS)
        _, saved = kernels.walsh_forward(x[:rows], frame.n, frame.tau, frame.leading_transform,
                                         cos, sin, kernels.Lease())
        kernels.walsh_backward(saved, x[:rows], gz)

    def with_tables():
        _, saved = walsh.forward(x, frame, weights)
        walsh.backward(saved, x, frame, torch.ones(BATCH, N_QUBITS))

    def function():
        leaf.grad = None
        head.zero_grad(set_to_none=True)
        cpu_kernels._EncodedWalsh.apply(flat, head.weights.reshape(-1), frame,
                                        wires).sum().backward()

    def module():
        leaf.grad = None
        head.zero_grad(set_to_none=True)
        head(leaf).sum().backward()

    def floor():
        leaf.grad = None
        head.zero_grad(set_to_none=True)
        _Floor.apply(flat, head.weights).sum().backward()

    threads = torch.get_num_threads()
    lines = [f"| {name} D={layers}, fwd+bwd | min ms | median ms |", "|---|---|---|"]
    lines += _alternating({"autograd Function doing nothing, in a loop of its own": floor},
                          repeats)
    lines += _alternating({
        "kernels": kernels_only, "+ phase tables, angle gradients": with_tables,
        "+ autograd Function": function, "AEVQC": module,
        "autograd Function doing nothing": floor,
    }, repeats)

    def on_threads(rows: int, count: int):
        def run():
            torch.set_num_threads(count)
            try:
                kernels_only(rows)
            finally:
                torch.set_num_threads(threads)
        return run

    lines += _alternating({
        f"kernels, {BATCH // 2} rows, 1 thread": on_threads(BATCH // 2, 1),
        f"kernels, {BATCH} rows, 2 threads": on_threads(BATCH, 2),
        f"kernels, {BATCH} rows, 1 thread": on_threads(BATCH, 1),
    }, repeats)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--layers", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--transform-bound", action="store_true",
                        help="only section 3: a transform's cost per level with its state in "
                             "L1, L2 and L3")
    parser.add_argument("--frame-overhead", nargs=2, metavar=("NAME", "D"),
                        help="only section 4: where a Hadamard-frame call of ansatz NAME at "
                             "depth D goes")
    args = parser.parse_args(argv)
    keep_freed_memory()
    warnings.simplefilter("ignore", CircuitLintWarning)
    threads = torch.get_num_threads()
    section = ("Hadamard-frame profile" if args.transform_bound or args.frame_overhead
               else f"general kernel profile: CPU ms (all threads), min of {args.repeats}")
    print(f"# {section}: batch {BATCH}, n={N_QUBITS}, float32; CPU {cpu_model()} "
          f"({os.cpu_count()} cores, native bf16: {'yes' if cpu_has_native_bf16() else 'no'}); "
          f"{threads} threads; LANES {kernels.LANES}")
    if args.transform_bound:
        print(f"\n# what bounds a transform: one thread, 16 rows in lane layout, float32, "
              f"wall time, min of {args.repeats}")
        print("\n".join(transform_bound(args.repeats)))
        return 0
    if args.frame_overhead:
        name, layers = args.frame_overhead
        print(f"\n# where a Hadamard-frame call goes: batch {BATCH}, wall time, "
              f"{args.repeats} alternating rounds")
        print("\n".join(frame_overhead(name, int(layers), args.repeats)))
        return 0
    kernel = Kernel(args.repeats)
    costs = unit_costs(kernel)
    unit = costs["real matrix, wire 0"]
    print("\n| instruction | forward CPU ms | backward CPU ms | × wire-0 matrix (fwd / bwd) |\n"
          "|---|---|---|---|")
    for label, (f, b) in costs.items():
        print(f"| {label} | {f:.3f} | {b:.3f} | {f / unit[0]:.1f} / {b / unit[1]:.1f} |")
    print(f"\n# per ansatz: forward + backward, ms of wall time on {threads} threads "
          "(CPU ms / threads)")
    ansatz_rows(kernel, costs, args.layers, threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
