"""``qhead demo``: a classical and a quantum head on the same small backbone, side by side.

Real training on the embedded digits data (scikit-learn's 8×8 digits, upsampled to
32×32): ``small_cnn`` + its classical head (GAP + Linear) and ``small_cnn`` + the AE-VQC
head (the whole 64×4×4 map amplitude-encoded on 10 qubits, Ansatz 1, D=1, ⟨Z⟩ of all
10 qubits, Linear(10, 10)), same seed, same data, same budget.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from qhead.engine.config import load_config
from qhead.engine.metrics import plot_learning_curves
from qhead.engine.record import CURVES_FILE, read_record
from qhead.engine.trainer import train

__all__ = ["DemoRow", "format_table", "precision_of", "run_demo"]

HEADS: tuple[tuple[str, list[str]], ...] = (
    ("classical", ["model.head=classical"]),
    ("quantum", ["model.head=quantum", "model.head_options.ansatz=ansatz1",
                 "model.head_options.layers=1"]),
)


@dataclass
class DemoRow:
    head: str
    params_after_backbone: int
    accuracy: float
    macro_f1: float
    seconds: float
    run_dir: Path
    #: how the run computed: ``bfloat16`` autocast or ``float32`` (``amp`` resolved)
    precision: str = "float32"


def run_demo(
    out: str | Path = "runs/demo",
    epochs: int = 8,
    image_size: int = 32,
    seed: int = 0,
    threads: int | None = 1,
    batch_size: int = 32,
    lr: float = 3e-3,
    progress: bool = True,
    overrides: Sequence[str] = (),
) -> list[DemoRow]:
    """Trains both heads and writes ``out/{classical,quantum}/`` and ``out/curves.png``.

    ``overrides`` (dotted ``key=value``) apply to both runs. An existing ``out`` is
    replaced (the demo always trains from scratch). One thread by default: for a model
    this small a second thread gains little on an idle machine and loses several-fold
    when the cores are shared (OpenMP threads wait on each other).
    """
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    rows: list[DemoRow] = []
    common = [
        # no flips: a mirrored digit is another glyph (or another digit)
        "data.name=digits", "data.hflip=false", "model.backbone=small_cnn",
        f"image_size={image_size}",
        f"epochs={epochs}", f"batch_size={batch_size}", f"lr={lr}", f"seed={seed}",
        "data.num_workers=0", "tensorboard=false", f"progress={str(progress).lower()}",
    ]  # fmt: skip
    if threads is not None:
        common.append(f"threads={threads}")
    for head, head_overrides in HEADS:
        cfg = load_config(overrides=[*common, *head_overrides, *overrides, f"out={out / head}"])
        t0 = time.perf_counter()
        run_dir = train(cfg)
        seconds = time.perf_counter() - t0
        run = read_record(run_dir)
        rows.append(DemoRow(head, int(run.params_head or 0), run.accuracy, run.macro_f1,
                            seconds, run_dir, precision_of(run.final["precision"])))
    plot_learning_curves(
        out / CURVES_FILE,
        {row.head: read_record(row.run_dir).metrics for row in rows},
        title=f"small_cnn on digits {image_size}x{image_size}: classical vs quantum head",
    )
    return rows


def precision_of(described: str) -> str:
    """``"bfloat16"`` from a run's ``final.json`` ``precision`` (``"cpu bfloat16 NCHW"``)."""
    parts = described.split()
    return parts[1] if len(parts) > 1 else described


def format_table(rows: list[DemoRow]) -> str:
    """The demo's result table (Markdown), with the precision that produced each row.

    ``amp=auto`` trains in bf16 autocast on a CPU with native bf16 and in float32
    elsewhere, and the two give different figures: the ``precision`` column says which.
    """
    lines = [
        "| head | params after backbone | accuracy | macro-F1 | seconds | precision |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(f"| {r.head} | {r.params_after_backbone:,} | {r.accuracy:.4f} | "
                     f"{r.macro_f1:.4f} | {r.seconds:.1f} | {r.precision} |")
    return "\n".join(lines)
