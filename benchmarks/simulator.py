"""Speed of qhead's simulator against PennyLane default.qubit, for every registered ansatz.

Batch 32, 25088 features (512×7×7, n = 15 qubits), float32. For every ansatz in
``qhead.quantum.ANSATZES`` at D ∈ {1, 3, 5}: forward and forward+backward (gradients
w.r.t. the inputs and the weights, as in end-to-end training) of ``AEVQC`` (qhead's
default simulator, "auto") and of the same head on PennyLane ``default.qubit`` (torch
interface, backprop, the batch broadcast through ``AmplitudeEmbedding``), side by side
with the ratio. Then:

* the ``qhead.qubit`` PennyLane device inside ``qml.qnn.TorchLayer`` against
  ``default.qubit`` in the same TorchLayer (PennyLane's own overhead included), with
  ``StronglyEntanglingLayers`` and ``BasicEntanglerLayers``;
* the import-order check (issue 12 item 6): the paper's circuits timed in a fresh
  subprocess with ``import qhead`` before ``import torch`` and with the opposite order
  (then torch's OpenMP workers busy-wait and qhead warns once).

Usage::

    python benchmarks/simulator.py [--repeats 5] [--pl-repeats 1] [--layers 1 3 5]
        [--ansatz NAME ...] [--no-pennylane] [--no-device] [--no-order] [--threads T]
        [--glibc-default]

Timings are medians over ``--repeats`` runs after warm-up (PennyLane: ``--pl-repeats``
runs after one warm-up, it is slow), wall time and, in parentheses, this process's CPU
time. The header prints the CPU model, whether it has native bf16, the transparent-huge-page
mode (the kernels' large buffers ask for huge pages) and the load average:
on a shared machine the numbers are indicative only. Both simulators run in this one
process under the same allocator setting: freed memory kept for reuse
(:func:`qhead.memory.keep_freed_memory`, as the ``qhead`` command does), or glibc's
defaults with ``--glibc-default``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings

# qhead before torch: it sets the OpenMP wait policy the CPU kernels need (qhead/__init__.py)
import qhead  # noqa: F401

# isort: split
import torch

from qhead.engine.runtime import cpu_has_native_bf16
from qhead.memory import keep_freed_memory
from qhead.quantum import AEVQC, ANSATZES, CircuitLintWarning
from qhead.simulator import kernels

BATCH, FEATURES, N_QUBITS = 32, 512 * 7 * 7, 15
#: The PennyLane templates timed inside a TorchLayer: their weight shapes at depth D.
TEMPLATE_SHAPES = {
    "StronglyEntanglingLayers": lambda d: (d, N_QUBITS, 3),
    "BasicEntanglerLayers": lambda d: (d, N_QUBITS),
}
PAPER = (("ansatz1", 1), ("ansatz1", 3), ("ansatz2", 1))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def huge_pages_mode() -> str:
    """Linux's transparent-huge-page mode (the bracketed word of
    /sys/kernel/mm/transparent_hugepage/enabled: "always", "madvise" or "never"), or
    "n/a": the kernels ask for huge pages for their large buffers, which only "always" and
    "madvise" grant (:func:`qhead.simulator.kernels._empty`)."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            text = f.read()
    except OSError:
        return "n/a"
    start, stop = text.find("["), text.find("]")
    return text[start + 1 : stop] if 0 <= start < stop else "n/a"


def timed(fn, repeats: int, warmup: int) -> tuple[float, float]:
    """Medians of the wall time and of this process's CPU time of ``fn()``, in ms."""
    for _ in range(warmup):
        fn()
    walls, cpus = [], []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append((time.perf_counter() - start) * 1e3)
        cpus.append((time.process_time() - cpu) * 1e3)
    return statistics.median(walls), statistics.median(cpus)


def layer_timings(layer, x: torch.Tensor, repeats: int, warmup: int):
    """(forward, forward+backward) timings of ``layer`` on ``x`` (input gradient included)."""

    def forward():
        with torch.no_grad():
            layer(x)

    xg = x.clone().requires_grad_()

    def forward_backward():
        layer.zero_grad(set_to_none=True)
        xg.grad = None
        layer(xg).sum().backward()

    return timed(forward, repeats, warmup), timed(forward_backward, repeats, warmup)


def kernel_cost(head: AEVQC) -> tuple[float, float] | None:
    """``(flops, bytes)`` per example, forward + backward, of the general kernel's program
    for ``head`` (after fusion, folding and the Euler split) or of the Hadamard-frame
    kernel (:func:`walsh_cost`), or None for the other specialised kernels.

    Per amplitude, float32. Flops: a real 2×2 matrix costs 3 forward and 10 backward (the
    state and λ un-applied, four dot products), on a complex state twice that; a complex
    matrix 14 and 44; a phase 6 forward (2 on a real state) and 12 backward (the state
    and λ), plus 4 for its angle gradient; a signed permutation or a sign vector 1 and 2
    per real array; encoding, measurement and the encoding's backward about 12 in all.
    Bytes (each pass reads and writes its arrays: 4 B per real array per amplitude): any
    instruction moves the state's arrays forward (8 B real, 16 B complex) and the state's
    and λ's backward (16 B, 32 B); encoding, lane conversions, measurement, the saved
    states and the feature gradient about 100 B in all.
    """
    from qhead.simulator import cpu_kernels
    from qhead.simulator.plan import compile_plan

    plan = compile_plan(tuple(head.ops), head.n_qubits, tuple(head.measured_wires),
                        tuple(head.weights.shape))
    kind = cpu_kernels.kernel_for(plan)
    if kind == "walsh":
        return walsh_cost(cpu_kernels._frame(plan))
    if kind != "general":
        return None
    program = cpu_kernels._program(plan, torch.float32)
    flops, moved = 12.0, 100.0
    for g, (kind, _, table) in enumerate(program.prog):
        complex_state = g >= program.first_complex
        parts = 2 if complex_state else 1
        moved += 24 * parts
        if kind == kernels.OP_REAL:
            flops += 13 * parts
        elif kind == kernels.OP_COMPLEX:
            flops += 58
        elif kind == kernels.OP_PHASE:
            flops += (2 if g == program.first_complex else 6) + 12
            flops += 4 * int(program.phase_grad[table])
        else:  # OP_PERM, OP_SIGN
            flops += 3 * parts
    return flops * 2**head.n_qubits, moved * 2**head.n_qubits


def walsh_cost(frame) -> tuple[float, float]:
    """``(flops, bytes)`` per example, forward + backward, of the Hadamard-frame kernel
    (:mod:`qhead.simulator.walsh`) for ``frame``: K segments, and a leading transform or
    not. Per amplitude, float32: a transform is n additions per real array (radix-4
    passes: ⌈n/2⌉ passes over it, 8 B each). Forward: the encoding (1 flop, 11 B:
    zeroing, then the scattered rows), the leading real transform (n), per segment its
    phase (2 on a real state, 6 on a complex one; 12 or 16 B, sharing the first pass of
    the transform) and a complex transform (2n), the measurement (5, 16 B). Backward: λ (3
    flops, built inside the first pass of its transform: no bytes of its own), per segment
    a complex transform of λ (2n) and the way back through the phase (∂L/∂Φ and λ: 16
    flops; against a kept complex state a read-only sweep of 16 B, the rotation inside the
    next transform's first pass; against the real encoded state one pass of 16 B, 10
    flops), the leading real transform (n), the projection (3, 10 B)."""
    n, segments = frame.n, len(frame.segments)
    passes = (n + 1) // 2
    real_transform, complex_transform = (n, 8 * passes), (2 * n, 16 * passes)
    flops, moved = 1 + 5 + 3 + 3, 11 + 16 + 10
    if frame.leading_transform:
        flops += 2 * real_transform[0]
        moved += 2 * real_transform[1]
    for k in range(segments):
        flops += 2 * complex_transform[0] + (2 + 10 if k == 0 else 6 + 16)
        moved += 2 * complex_transform[1] - 16 + (12 + 16 if k == 0 else 16 + 16)
    return flops * 2**n, moved * 2**n


def _cell(t) -> str:
    return f"{t[0]:.1f} ({t[1]:.0f})" if t[0] < 100 else f"{t[0]:.0f} ({t[1]:.0f})"


def ansatz_table(names, layer_counts, x, repeats, pl_repeats, pennylane: bool,
                 peak: float, bandwidth: float) -> list[str]:
    """The main table; for the general kernel's circuits also the arithmetic: Mflop and
    MB moved per example (fwd+bwd, :func:`kernel_cost`) and the speed-ups over
    default.qubit that the measured matmul peak and streaming bandwidth would allow."""
    header = "| circuit | pass | qhead ms (CPU ms) |"
    header += " default.qubit ms (CPU ms) | × (CPU ×) |" if pennylane else ""
    header += " Mflop/example | × at peak | MB/example | × at bandwidth |" if pennylane else ""
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    print(lines[0] + "\n" + lines[1], flush=True)
    for name in names:
        for layers in layer_counts:
            torch.manual_seed(1)
            ours = AEVQC(FEATURES, name, layers)
            mine = layer_timings(ours, x, repeats, 3)
            theirs = None
            if pennylane:
                ref = AEVQC(FEATURES, name, layers, backend="pennylane:default.qubit")
                ref.load_state_dict(ours.state_dict())
                theirs = layer_timings(ref, x, pl_repeats, 1)
            for i, label in enumerate(("forward", "fwd+bwd")):
                row = f"| {name} D={layers} | {label} | {_cell(mine[i])} |"
                if theirs is not None:
                    ratio = theirs[i][0] / mine[i][0]
                    cpu_ratio = theirs[i][1] / max(mine[i][1], 1e-9)
                    row += f" {_cell(theirs[i])} | {ratio:.0f}× ({cpu_ratio:.0f}×) |"
                    cost = kernel_cost(ours) if i == 1 else None
                    if cost is None:
                        row += " | | | |"
                    else:
                        flops, moved = cost
                        flop_ms = flops * BATCH / (peak * 1e9) * 1e3
                        byte_ms = moved * BATCH / (bandwidth * 1e9) * 1e3
                        row += (f" {flops / 1e6:.0f} | {theirs[i][0] / flop_ms:.0f}× |"
                                f" {moved / 1e6:.0f} | {theirs[i][0] / byte_ms:.0f}× |")
                lines.append(row)
            print(lines[-2] + "\n" + lines[-1], flush=True)
    return lines


def _template_qnode(qml, device, template):
    @qml.qnode(device, interface="torch")
    def circuit(inputs, weights):
        qml.AmplitudeEmbedding(inputs, wires=range(N_QUBITS), pad_with=0.0, normalize=True)
        template(weights, wires=range(N_QUBITS))
        return [qml.expval(qml.PauliZ(w)) for w in range(N_QUBITS)]

    return circuit


def stream_gbps(repeats: int = 30) -> float:
    """Measured rate (GB/s, read + write) of an in-place update of 8 MiB of float32 on all
    threads: the bandwidth available to passes over groups of states held in the caches
    (the general kernel's groups are 4 MiB per thread)."""
    buffer = torch.ones(2 << 20)
    wall, _ = timed(lambda: buffer.mul_(1.0), repeats, 5)
    return 2 * buffer.numel() * 4 / (wall * 1e-3) / 1e9


def peak_gflops(repeats: int = 5) -> float:
    """Measured float32 matrix-product rate of this machine (GFLOP/s), the reference peak
    for the arithmetic of a circuit."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    wall, _ = timed(lambda: a @ b, repeats, 2)
    return 2 * 1024**3 / (wall * 1e-3) / 1e9


def device_table(layer_counts, x, repeats, pl_repeats) -> list[str]:
    """qhead.qubit vs default.qubit inside PennyLane's own TorchLayer.

    The inputs are zero-padded to 2^15 with torch first: PennyLane's ``AmplitudeEmbedding``
    pads with a Python list (``[[0.0] * 7680] * 32`` through ``torch.as_tensor``), which
    costs the same on every device; its cost is printed separately.
    """
    import pennylane as qml

    from qhead.quantum.pennylane_device import QheadQubit

    lines = ["| TorchLayer template | pass | qhead.qubit ms (CPU ms) | default.qubit ms (CPU ms) "
             "| × (CPU ×) |", "|---|---|---|---|---|"]
    print(lines[0] + "\n" + lines[1], flush=True)
    for label, shape in TEMPLATE_SHAPES.items():
        template = getattr(qml, label)
        for layers in layer_counts:
            layers_by_device = [
                qml.qnn.TorchLayer(_template_qnode(qml, device, template),
                                   {"weights": shape(layers)})
                for device in (QheadQubit(wires=N_QUBITS),
                               qml.device("default.qubit", wires=N_QUBITS))
            ]
            ours, ref = layers_by_device
            ref.load_state_dict(ours.state_dict())
            padded = torch.nn.functional.pad(x, (0, 2**N_QUBITS - x.shape[1]))
            mine = layer_timings(ours, padded, repeats, 2)
            theirs = layer_timings(ref, padded, pl_repeats, 1)
            if layers == layer_counts[0]:
                unpadded = layer_timings(ours, x, repeats, 1)[0]
                print(f"# {label} D={layers}: qhead.qubit forward with unpadded inputs "
                      f"{_cell(unpadded)} ms (PennyLane pads them in AmplitudeEmbedding)")
            for i, name in enumerate(("forward", "fwd+bwd")):
                ratio = theirs[i][0] / mine[i][0]
                cpu_ratio = theirs[i][1] / max(mine[i][1], 1e-9)
                lines.append(f"| {label} D={layers} | {name} | {_cell(mine[i])} | "
                             f"{_cell(theirs[i])} | {ratio:.0f}× ({cpu_ratio:.0f}×) |")
            print(lines[-2] + "\n" + lines[-1], flush=True)
    return lines


_ORDER_CHILD = """
import sys, time, statistics, warnings
if sys.argv[1] == "torch-first":
    import torch, qhead
else:
    import qhead, torch
from qhead.quantum import AEVQC, CircuitLintWarning
warnings.simplefilter("ignore")
x = torch.randn(32, 25088).relu().requires_grad_()
out = []
for name, layers in ((("ansatz1", 1), ("ansatz1", 3), ("ansatz2", 1))):
    head = AEVQC(25088, name, layers)
    times = []
    for i in range(3 + int(sys.argv[2])):
        head.zero_grad(); x.grad = None
        start = time.perf_counter(); head(x).sum().backward()
        times.append(time.perf_counter() - start)
    out.append(f"{1e3 * statistics.median(times[3:]):.1f}")
print(" ".join(out))
"""


def order_table(repeats: int) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    lines = ["| import order | ansatz1 D=1 fwd+bwd ms | ansatz1 D=3 | ansatz2 D=1 |",
             "|---|---|---|---|"]
    print(lines[0] + "\n" + lines[1], flush=True)
    for order in ("qhead-first", "torch-first", "qhead-first", "torch-first"):
        result = subprocess.run(
            [sys.executable, "-c", _ORDER_CHILD, order, str(repeats)], env=env,
            capture_output=True, text=True, check=True, timeout=600,
        )
        cells = result.stdout.split()
        lines.append(f"| {order} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs for qhead")
    parser.add_argument("--pl-repeats", type=int, default=1, help="timed runs for PennyLane")
    parser.add_argument("--layers", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--ansatz", nargs="+", default=None, help="default: all registered")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--no-pennylane", action="store_true", help="qhead only")
    parser.add_argument("--no-ansatz", action="store_true", help="skip the ansatz table")
    parser.add_argument("--no-device", action="store_true", help="skip the TorchLayer table")
    parser.add_argument("--no-order", action="store_true", help="skip the import-order runs")
    parser.add_argument("--glibc-default", action="store_true",
                        help="leave glibc's malloc as it is (default: qhead.memory."
                             "keep_freed_memory(), for both simulators, as the qhead command)")
    args = parser.parse_args(argv)
    kept = False if args.glibc_default else keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", CircuitLintWarning)
    names = args.ansatz or sorted(ANSATZES.names())
    torch.manual_seed(0)
    x = torch.randn(BATCH, FEATURES).relu()
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(
        f"# qhead simulator benchmark: batch {BATCH}, {FEATURES} features (n={N_QUBITS}), "
        f"float32; CPU {cpu_model()} ({os.cpu_count()} cores, native bf16: "
        f"{'yes' if cpu_has_native_bf16() else 'no'}); torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; CPU kernels {'on' if kernels.enabled() else 'off'}"
        f"; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; freed memory kept "
        f"(qhead.memory): {'yes' if kept else 'no'}; transparent huge pages: "
        f"{huge_pages_mode()}; load average {load}",
        flush=True,
    )
    peak, bandwidth = peak_gflops(), stream_gbps()
    print(f"# measured float32 matmul peak: {peak:.0f} GFLOP/s; in-cache streaming "
          f"(8 MiB in place, read + write): {bandwidth:.0f} GB/s", flush=True)
    if not args.no_ansatz:
        ansatz_table(names, args.layers, x, args.repeats, args.pl_repeats,
                     not args.no_pennylane, peak, bandwidth)
    if not args.no_device and not args.no_pennylane:
        print()
        device_table(args.layers, x, args.repeats, args.pl_repeats)
    if not args.no_order:
        print("\n# import order, each in a fresh process (fwd+bwd ms, median)")
        order_table(max(args.repeats, 5))
    print(f"# load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
