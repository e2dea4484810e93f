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

Usage::

    python benchmarks/kernel_profile.py [--repeats 9] [--layers 1 3 5]

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--layers", type=int, nargs="+", default=[1, 3, 5])
    args = parser.parse_args(argv)
    keep_freed_memory()
    warnings.simplefilter("ignore", CircuitLintWarning)
    threads = torch.get_num_threads()
    print(f"# general kernel profile: batch {BATCH}, n={N_QUBITS}, float32; CPU {cpu_model()} "
          f"({os.cpu_count()} cores, native bf16: {'yes' if cpu_has_native_bf16() else 'no'}); "
          f"{threads} threads; LANES {kernels.LANES}; "
          f"CPU ms (all threads), min of {args.repeats}")
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
