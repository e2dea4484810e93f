"""Speed of the AE-VQC layer: qhead's simulator vs PennyLane, and vs a ResNet-18 step.

Batch 32, 25088 features (512×7×7, n = 15 qubits), circuits ansatz1 D=1, ansatz1 D=3,
ansatz2 D=1; forward and forward+backward (gradients w.r.t. inputs and weights, as in
end-to-end training). References in the same run:

* PennyLane ``default.qubit``, torch interface, ``diff_method="backprop"``, the batch
  broadcast through ``AmplitudeEmbedding`` (one QNode call per batch);
* PennyLane ``lightning.qubit``, ``diff_method="adjoint"``; adjoint differentiation
  cannot differentiate the state preparation, so its forward+backward is w.r.t. the
  weights only (an advantage for it); the batch is passed broadcast and PennyLane
  splits it into one circuit per example.

Also times one training step of torchvision's ResNet-18 (batch 32, 224×224,
forward + cross-entropy backward + Adam) to put the head's cost in proportion.

Usage::

    python benchmarks/simulator.py [--repeats 5] [--quick] [--threads 1] [--device cpu]

Timings are medians over ``--repeats`` runs after one warm-up run (PennyLane runs
``--pl-repeats`` times, it is slow), as wall time and, in parentheses, this process's
CPU time (the fairer measure on a shared machine; use ``--threads 1`` there).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings

# qhead before torch: it sets the OpenMP wait policy the CPU kernels need (qhead/__init__.py)
import qhead  # noqa: F401

# isort: split
import torch

from qhead.quantum import AEVQC, CircuitLintWarning
from qhead.simulator import kernels

CIRCUITS = (("ansatz1", 1), ("ansatz1", 3), ("ansatz2", 1))
BATCH, FEATURES = 32, 512 * 7 * 7


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, repeats: int, warmup: int, device: torch.device) -> tuple[float, float]:
    """Medians of the wall time and of this process's CPU time of ``fn()``, in ms.

    On a shared machine the wall time includes time spent waiting for a core; the CPU
    time (single-threaded runs) counts only the work done, so ratios of CPU times are
    the fairer comparison there. On CUDA only the wall time is meaningful.
    """
    for _ in range(warmup):
        fn()
    walls, cpus = [], []
    for _ in range(repeats):
        _sync(device)
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        _sync(device)
        walls.append((time.perf_counter() - start) * 1e3)
        cpus.append((time.process_time() - cpu) * 1e3)
    return statistics.median(walls), statistics.median(cpus)


def layer_timings(layer: AEVQC, x: torch.Tensor, repeats: int, warmup: int, input_grad: bool):
    """(forward ms, forward+backward ms) of ``layer`` on ``x``."""
    device = x.device

    def forward():
        with torch.no_grad():
            layer(x)

    xg = x.clone().requires_grad_(input_grad)

    def forward_backward():
        layer.zero_grad(set_to_none=True)
        xg.grad = None
        layer(xg).sum().backward()

    return (
        timed(forward, repeats, warmup, device),
        timed(forward_backward, repeats, warmup, device),
    )


def resnet_step_ms(repeats: int, warmup: int, device: torch.device) -> tuple[float, float]:
    """One ResNet-18 training step (batch 32, 224×224, fwd+bwd+Adam): (wall, CPU) ms."""
    from torchvision.models import resnet18

    model = resnet18(num_classes=10).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = torch.randn(BATCH, 3, 224, 224, device=device)
    labels = torch.randint(0, 10, (BATCH,), device=device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()

    return timed(step, repeats, warmup, device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="timed runs for qhead")
    parser.add_argument("--pl-repeats", type=int, default=3, help="timed runs for PennyLane")
    parser.add_argument("--quick", action="store_true", help="1 repeat each, fewer references")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--device", default="cpu", help="device for qhead and ResNet-18")
    parser.add_argument("--no-pennylane", action="store_true", help="skip PennyLane references")
    parser.add_argument("--no-lightning", action="store_true", help="skip lightning.qubit")
    parser.add_argument("--no-resnet", action="store_true", help="skip the ResNet-18 step")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    # Three warm-up runs: the first call of a circuit compiles its plan and loads the
    # compiled CPU kernels; one run was not enough for the first circuit measured.
    repeats, pl_repeats, warmup = args.repeats, args.pl_repeats, 3
    if args.quick:
        repeats, pl_repeats = 3, 1
    device = torch.device(args.device)
    warnings.simplefilter("ignore", CircuitLintWarning)
    torch.manual_seed(0)
    x = torch.randn(BATCH, 512, 7, 7, device=device).relu()

    print(
        f"# AE-VQC benchmark: batch {BATCH}, {FEATURES} features (n=15), float32, "
        f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"{platform.processor() or platform.machine()}, CPU kernels "
        f"{'on' if kernels.enabled() else 'off'}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}"
    )
    references = []
    if not args.no_pennylane:
        references.append("pennylane:default.qubit")
        if not args.no_lightning:
            references.append("pennylane:lightning.qubit")
    rows = []
    for name, layers in CIRCUITS:
        torch.manual_seed(1)
        ours = AEVQC(FEATURES, name, layers).to(device)
        result = {"circuit": f"{name} D={layers}"}
        result["qhead"] = layer_timings(ours, x, repeats, warmup, input_grad=True)
        for backend in references:
            ref = AEVQC(FEATURES, name, layers, backend=backend)
            ref.load_state_dict(ours.state_dict())
            input_grad = backend.endswith("default.qubit")
            result[backend] = layer_timings(ref, x.cpu(), pl_repeats, 0 if args.quick else 1,
                                            input_grad=input_grad)
        rows.append(result)
        print(f"  done {result['circuit']}", flush=True)

    header = ["circuit", "pass", "qhead ms (CPU ms)"]
    for backend in references:
        short = backend.split(":")[1]
        header += [f"{short} ms (CPU ms)", f"× vs {short} (CPU)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for result in rows:
        for i, label in enumerate(("forward", "fwd+bwd")):
            wall, cpu = result["qhead"][i]
            cells = [result["circuit"], label, f"{wall:.1f} ({cpu:.1f})"]
            for backend in references:
                ref_wall, ref_cpu = result[backend][i]
                cells += [
                    f"{ref_wall:.0f} ({ref_cpu:.0f})",
                    f"{ref_wall / wall:.0f}× ({ref_cpu / cpu:.0f}×)",
                ]
            lines.append("| " + " | ".join(cells) + " |")
    print("\n".join(lines))
    if "pennylane:lightning.qubit" in references:
        print("(lightning.qubit fwd+bwd: adjoint gradient w.r.t. the weights only; "
              "the broadcast batch is split into 32 circuits by PennyLane)")
    if not args.no_resnet:
        step_wall, step_cpu = resnet_step_ms(1 if args.quick else 3, 1, device)
        print(
            f"\nResNet-18 training step (batch {BATCH}, 224×224, fwd+bwd+Adam): "
            f"{step_wall:.0f} ms (CPU {step_cpu:.0f} ms)"
        )
        for result in rows:
            wall, cpu = result["qhead"][1]
            print(
                f"  {result['circuit']}: AE-VQC fwd+bwd = {100 * wall / step_wall:.2f} % of the "
                f"step ({100 * cpu / step_cpu:.2f} % by CPU time)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
