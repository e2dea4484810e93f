"""Where a ``qml.qnn.TorchLayer`` forward+backward on ``qhead.qubit`` spends its time.

PennyLane's ``StronglyEntanglingLayers`` or ``BasicEntanglerLayers`` after
``AmplitudeEmbedding(normalize=True)`` at batch 32, 15 wires (the inputs zero-padded
to 2^15 first, as in ``benchmarks/simulator.py``), under ``torch.profiler``: the torch
operators by their own CPU time per call, which separates qhead's autograd Function
(``_EncodedWalsh`` and its backward, for the frame's circuits) from the normalisation
that PennyLane does in torch before any device sees the state (the same on every device).

Usage::

    python benchmarks/torchlayer_profile.py [--template StronglyEntanglingLayers] [--layers 1]
"""

from __future__ import annotations

import argparse
import time
import warnings

# qhead before torch: it sets the OpenMP wait policy the CPU kernels need (qhead/__init__.py)
import qhead  # noqa: F401

# isort: split
import torch

from qhead.memory import keep_freed_memory
from simulator import BATCH, FEATURES, N_QUBITS, TEMPLATE_SHAPES, _template_qnode, cpu_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", choices=sorted(TEMPLATE_SHAPES),
                        default="StronglyEntanglingLayers")
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    keep_freed_memory()
    warnings.simplefilter("ignore")
    import pennylane as qml
    from torch.profiler import profile

    from qhead.quantum.pennylane_device import QheadQubit

    layer = qml.qnn.TorchLayer(
        _template_qnode(qml, QheadQubit(wires=N_QUBITS), getattr(qml, args.template)),
        {"weights": TEMPLATE_SHAPES[args.template](args.layers)})
    torch.manual_seed(0)
    x = torch.nn.functional.pad(torch.randn(BATCH, FEATURES), (0, 2**N_QUBITS - FEATURES))
    x.requires_grad_()

    def step():
        layer.zero_grad(set_to_none=True)
        x.grad = None
        layer(x).sum().backward()

    for _ in range(5):
        step()
    start = time.perf_counter()
    for _ in range(args.repeats):
        step()
    wall = (time.perf_counter() - start) / args.repeats * 1e3
    print(f"# {args.template} D={args.layers} on qhead.qubit in a TorchLayer, batch {BATCH}: "
          f"forward+backward {wall:.1f} ms (mean of {args.repeats}); CPU {cpu_model()}; "
          f"{torch.get_num_threads()} threads")
    with profile() as prof:
        for _ in range(args.repeats):
            step()
    print(f"# torch.profiler, {args.repeats} calls (self CPU: per call = total / {args.repeats})")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
