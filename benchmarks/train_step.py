"""Training-step speed: plain float32 torchvision ResNet-18 vs qhead's training step.

Side by side in one process, interleaved (A, B, A, B, ...) so that other load on the
machine hits every variant alike; the median ms/step of each is reported.

* ``torchvision fp32 NCHW``: the loop everybody writes first — ``resnet18(num_classes=3)``,
  NCHW float32, ``Adam(lr=1e-3)``, ``zero_grad``/forward/cross-entropy/backward/step.
* ``qhead (auto)``: the same network built by qhead (preset ``resnet18/busi``: ResNet-18 +
  GAP + Linear(512, 3)) through :func:`qhead.engine.train_step` with the ``auto``
  settings ``qhead train`` uses on this machine (channels_last; bf16 autocast only if the
  CPU has native bf16).
* ``qhead quantum head``: preset ``resnet18_q/busi`` (AE-VQC on the 512x7x7 map, 15 qubits).
* every variant runs with freed memory kept for reuse, as under the ``qhead`` command
  (:func:`qhead.memory.keep_freed_memory`); ``--glibc-default`` leaves glibc's malloc as
  it is;
* optional: ``--bf16`` forces bf16 autocast (timed with 1 warm-up + 1 step only: on a
  CPU without native bf16 instructions one step takes minutes), ``--compile`` adds
  ``torch.compile`` (inductor) on top of the qhead step.

Then a short convergence check: small_cnn on the digits data, float32 vs bf16 autocast,
same seed, a few epochs through ``qhead.engine.train``.

    python benchmarks/train_step.py                 # ~5 minutes on 2 cores
    python benchmarks/train_step.py --steps 3 --no-convergence
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# qhead before torch: it sets the OpenMP wait policy the CPU kernels need (qhead/__init__.py)
import qhead  # noqa: F401

# isort: split
import torch
import torchvision

from qhead.engine import load_config, make_step_context, prepare_model, train, train_step
from qhead.engine.runtime import cpu_has_native_bf16
from qhead.memory import keep_freed_memory
from qhead.models import build_model, get_preset

BATCH, SIZE, CLASSES = 32, 224, 3


def plain_step_fn() -> Callable[[torch.Tensor, torch.Tensor], float]:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=CLASSES)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(x: torch.Tensor, y: torch.Tensor) -> float:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def qhead_step_fn(preset: str, amp: str = "auto", channels_last: str = "auto",
                  compile_model: bool = False) -> tuple[Callable, str]:
    torch.manual_seed(0)
    model = build_model(get_preset(preset))
    ctx = make_step_context(model, torch.device("cpu"), amp, channels_last)
    prepare_model(model, ctx)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    net = torch.compile(model) if compile_model else model

    def step(x: torch.Tensor, y: torch.Tensor) -> float:
        loss, _ = train_step(net, x, y, optimizer, ctx)
        return float(loss)

    return step, ctx.describe()


def time_variants(variants: dict[str, Callable], steps: int, warmup: int) -> dict[str, list]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, 3, SIZE, SIZE, generator=g)
    y = torch.randint(0, CLASSES, (BATCH,), generator=g)
    for name, fn in variants.items():
        t0 = time.perf_counter()
        for _ in range(warmup):
            fn(x, y)
        print(f"  warm-up {name}: {time.perf_counter() - t0:.1f} s", flush=True)
    times: dict[str, list] = {name: [] for name in variants}
    for i in range(steps):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn(x, y)
            times[name].append((time.perf_counter() - t0) * 1000)
        print(f"  round {i + 1}/{steps}: " + ", ".join(
            f"{n} {t[-1]:.0f} ms" for n, t in times.items()), flush=True)
    return times


def convergence(epochs: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for amp in ("off", "bf16"):
            cfg = load_config(overrides=[
                "data.name=digits", "model.backbone=small_cnn", "model.head=classical",
                "image_size=32", f"epochs={epochs}", "lr=0.003", "seed=0", f"amp={amp}",
                "data.num_workers=0", "tensorboard=false", "progress=false", "plots=false",
                "threads=1", f"out={Path(tmp) / amp}",
            ])  # fmt: skip
            t0 = time.perf_counter()
            run = train(cfg)
            final = json.loads((run / "final.json").read_text())
            rows.append({"amp": amp, "accuracy": final["accuracy"],
                         "macro_f1": final["macro_f1"], "train_loss": final["train_loss"],
                         "seconds": time.perf_counter() - t0})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--bf16", action="store_true", help="also time forced bf16 autocast")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--no-convergence", action="store_true")
    parser.add_argument("--epochs", type=int, default=4, help="convergence-check epochs")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--glibc-default", action="store_true",
                        help="leave glibc's malloc as it is (default: keep freed memory, as "
                             "the qhead command does; qhead.memory)")
    args = parser.parse_args()
    kept = False if args.glibc_default else keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, native bf16: {cpu_has_native_bf16()}, "
          f"freed memory kept: {'yes' if kept else 'no'}, "
          f"load average {os.getloadavg()[0]:.2f}; batch {BATCH}, {SIZE}x{SIZE}, Adam")

    variants: dict[str, Callable] = {"torchvision fp32 NCHW": plain_step_fn()}
    labels = {"torchvision fp32 NCHW": "cpu float32 NCHW"}
    fn, how = qhead_step_fn("resnet18/busi")
    variants["qhead (auto)"], labels["qhead (auto)"] = fn, how
    fn, how = qhead_step_fn("resnet18_q/busi")
    variants["qhead quantum head"], labels["qhead quantum head"] = fn, how
    if args.compile:
        fn, how = qhead_step_fn("resnet18/busi", compile_model=True)
        variants["qhead + compile"], labels["qhead + compile"] = fn, how + " compiled"
    times = time_variants(variants, args.steps, args.warmup)
    if args.bf16:
        fn, how = qhead_step_fn("resnet18/busi", amp="bf16")
        labels["qhead bf16 (forced)"] = how
        times.update(time_variants({"qhead bf16 (forced)": fn}, 1, 1))

    base = statistics.median(times["torchvision fp32 NCHW"])
    print("\n| variant | precision / layout | ms/step (median) | speed-up |")
    print("|---|---|---:|---:|")
    results = []
    for name, values in times.items():
        ms = statistics.median(values)
        print(f"| {name} | {labels[name]} | {ms:.0f} | {base / ms:.2f}x |")
        results.append({"variant": name, "setting": labels[name], "ms_per_step": ms,
                        "speedup": base / ms, "all_ms": values})
    out: dict = {"steps": results, "load_average": os.getloadavg()[0]}
    if not args.no_convergence:
        print(f"\nconvergence: small_cnn on digits 32x32, {args.epochs} epochs, seed 0")
        rows = convergence(args.epochs)
        print("| amp | test accuracy | test macro-F1 | final train loss | seconds |")
        print("|---|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['amp']} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | "
                  f"{r['train_loss']:.4f} | {r['seconds']:.1f} |")
        out["convergence"] = rows
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
