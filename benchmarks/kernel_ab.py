"""Two or more versions of the compiled kernels, timed side by side in one process.

On the shared 2-core development VMs a single benchmark run moves by 5–20 % from one
minute to the next (the measured matmul peak of ``benchmarks/simulator.py`` has ranged
from 102 to 195 GFLOP/s within a session), so a change to ``kernels.py`` worth a few per
cent cannot be judged from two runs. This script loads ``src/qhead/simulator/kernels.py``
of each git revision (or file) given as a module of its own, checks that they compute
the same outputs and gradients, and times the Hadamard-frame kernel's forward + backward
(``walsh_forward`` + ``walsh_backward``, no autograd) of each in turn, alternating the
order every round, for one circuit at batch ``--rows`` on ``--threads`` threads. Every
version runs with the current tree's phase tables (``qhead.simulator.walsh``), so the
versions must share ``walsh_forward``'s signature (true from session 26 on).

Usage::

    python benchmarks/kernel_ab.py 0fe501a HEAD [--ansatz strongly-entangling]
        [--layers 1] [--rows 32] [--threads 2] [--repeats 30]

Run it twice with the versions in both orders: the first module loaded can be favoured.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

# qhead before torch: it sets the OpenMP wait policy the CPU kernels need (qhead/__init__.py)
import qhead  # noqa: F401

# isort: split
import numpy as np
import torch

from qhead.engine.runtime import cpu_has_native_bf16
from qhead.memory import keep_freed_memory
from qhead.quantum import AEVQC, CircuitLintWarning
from qhead.simulator import cpu_kernels, walsh
from qhead.simulator.plan import compile_plan
from simulator import FEATURES, cpu_model

ROOT = Path(__file__).resolve().parent.parent
KERNELS = "src/qhead/simulator/kernels.py"


def kernels_source(version: str, folder: Path, index: int) -> Path:
    """A copy of ``kernels.py`` of ``version`` (a file, else a git revision) in a
    subfolder of its own: numba caches compiled code next to the source, keyed by its
    path, and a cache written for the copy's module name must never be found by the
    installed ``qhead.simulator.kernels`` (it would fail to import that module)."""
    if Path(version).is_file():
        text = Path(version).read_text()
    else:
        text = subprocess.run(["git", "show", f"{version}:{KERNELS}"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout
    path = folder / str(index) / "kernels.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("versions", nargs="+", help="git revisions or kernels.py files")
    parser.add_argument("--ansatz", default="strongly-entangling")
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", CircuitLintWarning)
    keep_freed_memory()

    torch.manual_seed(0)
    head = AEVQC(FEATURES, args.ansatz, args.layers)
    plan = compile_plan(tuple(head.ops), head.n_qubits, tuple(head.measured_wires),
                        tuple(head.weights.shape))
    if cpu_kernels.kernel_for(plan) != "walsh":
        raise SystemExit(f"{args.ansatz} D={args.layers} does not run in the Hadamard frame")
    frame = cpu_kernels._frame(plan)
    x = torch.randn(args.rows, FEATURES)
    weights = head.weights.detach().reshape(-1).to(torch.float64).numpy()
    gz = torch.ones(args.rows, frame.n)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as folder:
        modules = {v: load(kernels_source(v, Path(folder), i), f"kernels_ab_{i}")
                   for i, v in enumerate(args.versions)}

        def runner(module):
            cos, sin = walsh.phase_tables(frame, weights, np.float32, module.Lease())

            def run():
                z, saved = module.walsh_forward(x, frame.n, frame.tau, frame.leading_transform,
                                                cos, sin, module.Lease())
                grad, phase_grad = module.walsh_backward(saved, x, gz)
                return z, grad, torch.from_numpy(phase_grad)
            return run

        runs = {v: runner(m) for v, m in modules.items()}
        first, *others = runs
        reference = runs[first]()
        print(f"# {args.ansatz} D={args.layers}, batch {args.rows}, {args.threads} threads, "
              f"n={frame.n}, float32; CPU {cpu_model()} ({os.cpu_count()} cores, native bf16: "
              f"{'yes' if cpu_has_native_bf16() else 'no'}); {args.repeats} rounds")
        for version in others:
            worst = max(float((a - b).abs().max() / a.abs().max())
                        for a, b in zip(reference, runs[version](), strict=True))
            print(f"# {version} vs {first}: largest relative difference {worst:.1e} "
                  "(outputs, feature and phase gradients)")
        for run in runs.values():
            for _ in range(3):
                run()
        times: dict[str, list[float]] = {v: [] for v in runs}
        for round_ in range(args.repeats):
            for version in (list(runs) if round_ % 2 == 0 else list(runs)[::-1]):
                start = time.perf_counter()
                runs[version]()
                times[version].append((time.perf_counter() - start) * 1e3)
    print("| version | min ms | median ms |\n|---|---|---|")
    for version, t in times.items():
        print(f"| {version} | {min(t):.2f} | {float(np.median(t)):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
