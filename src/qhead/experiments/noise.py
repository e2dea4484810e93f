"""Noise study: test accuracy / macro-F1 of trained quantum models against noise strength.

For every checkpoint the backbone's feature maps of the test split are computed **once**
(float32, no autocast); for every noise strength only the head runs again: the noisy ⟨Z⟩
of :func:`qhead.simulator.noise.noisy_encoded_expval_z`, then the head's classical layers.
A circuit of one-qubit gates (Ansatz 1) is evaluated exactly (no statistical error);
others by Monte-Carlo trajectories, repeated over ``noise_seeds`` seeds (mean ± std), with
the trajectories' mean standard error of ⟨Z⟩ reported beside.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from qhead.errors import ConfigError, DataError
from qhead.experiments.shots import pooled
from qhead.experiments.stats import Summary, summarize
from qhead.simulator.noise import NoiseModel, noisy_encoded_expval_z

__all__ = [
    "CHANNELS",
    "HeadFeatures",
    "NoiseRow",
    "compute_test_features",
    "noise_study",
    "parse_strengths",
    "write_noise_report",
]

CHANNELS = ("depolarizing", "bit_flip", "phase_flip", "readout")


def parse_strengths(text: str) -> list[float]:
    """``"0,0.001,0.01"`` → ``[0.0, 0.001, 0.01]``; ConfigError for a non-probability."""
    out: list[float] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            value = math.nan
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"--strengths: {part!r} is not a probability in [0, 1]")
        out.append(value)
    if not out:
        raise ConfigError("--strengths: give at least one value, e.g. 0,0.001,0.01")
    return list(dict.fromkeys(out))


@dataclass
class HeadFeatures:
    """A checkpoint's test-split feature maps and what the head needs to finish the job."""

    checkpoint: Path
    features: torch.Tensor  # [N, C, h, w] float32
    labels: torch.Tensor  # [N]
    classes: list[str]
    head: torch.nn.Module
    circuit: Any
    seconds: float


def compute_test_features(
    checkpoint: str | Path, data_root: str | None = None, batch_size: int = 32
) -> HeadFeatures:
    """Loads a quantum checkpoint and computes its test split's backbone features once.

    Raises:
        CheckpointError, ConfigError (not a quantum head), DataError (classes differ).
    """
    from qhead.data import DataConfig, build_datasets
    from qhead.engine import load_checkpoint
    from qhead.experiments.hardware import find_circuit

    loaded = load_checkpoint(checkpoint)
    circuit = find_circuit(loaded.model, f"checkpoint {checkpoint} (head "
                                         f"{loaded.config.model.head!r})")
    data = dataclasses.asdict(loaded.config.data)
    data["hflip"] = False
    if data_root is not None:
        data["root"] = data_root
    splits = build_datasets(DataConfig(**data))
    if list(splits.classes) != list(loaded.classes):
        raise DataError(f"checkpoint {checkpoint} was trained on classes {loaded.classes} but "
                        f"the data has {list(splits.classes)}")
    model = loaded.model.float().eval()
    start = time.perf_counter()
    feats, labels = [], []
    loader = torch.utils.data.DataLoader(splits.test, batch_size=batch_size, shuffle=False)
    with torch.no_grad():
        for images, y in loader:
            feats.append(model.forward_features(images.float()))
            labels.append(torch.as_tensor(y))
    return HeadFeatures(Path(checkpoint), torch.cat(feats), torch.cat(labels),
                        list(loaded.classes), model.head, circuit,
                        time.perf_counter() - start)


def _logits(tf: HeadFeatures, z: torch.Tensor) -> torch.Tensor:
    # the quantum head is pre = [circuit, *FC stack], then fc
    with torch.no_grad():
        return tf.head.fc(tf.head.pre[1:](z.float()))


@dataclass
class NoiseRow:
    """Metrics of one checkpoint at one noise strength over the noise seeds."""

    checkpoint: Path
    channel: str
    strength: float
    noise: dict[str, Any]
    method: str
    accuracy: Summary
    macro_f1: Summary
    z_stderr: float  # mean standard error of ⟨Z⟩ over examples and wires (0 when exact)
    trajectories: int
    shots: int | None
    seeds: list[int]
    seconds: float


def noise_study(
    features: Sequence[HeadFeatures],
    channel: str,
    strengths: Sequence[float],
    *,
    base: NoiseModel | None = None,
    trajectories: int = 100,
    shots: int | None = None,
    noise_seeds: int = 3,
    method: str = "auto",
    echo: Callable[[str], None] = lambda _line: None,
) -> list[NoiseRow]:
    """Evaluates every checkpoint's head at every strength of ``channel``.

    Args:
        features: from :func:`compute_test_features` (computed once per checkpoint).
        channel: one of :data:`CHANNELS`; its probability is set to each strength.
        strengths: the probabilities to evaluate.
        base: the other noise settings (kept fixed), e.g. a readout error.
        trajectories, shots, method: as :func:`qhead.simulator.noise.noisy_expval_z`.
        noise_seeds: seeds of the trajectory/shot sampler (1 is used when exact).

    Raises:
        ConfigError: an unknown channel or ``noise_seeds < 1``.
    """
    from qhead.engine.metrics import classification_metrics

    if channel not in CHANNELS:
        raise ConfigError(f"--channel: {channel!r} is not allowed; allowed: {', '.join(CHANNELS)}")
    if isinstance(noise_seeds, bool) or not isinstance(noise_seeds, int) or noise_seeds < 1:
        raise ConfigError(f"--noise-seeds: expected an integer >= 1, got {noise_seeds!r}")
    base = base or NoiseModel()
    rows = []
    for tf in features:
        c = tf.circuit
        weights = c.weights.detach().float()
        for strength in strengths:
            noise = dataclasses.replace(base, **{channel: strength})
            start = time.perf_counter()
            accs, f1s, errs = [], [], []
            seeds = list(range(noise_seeds))
            used_method, used_t = "exact", 0
            for seed in seeds:
                generator = torch.Generator().manual_seed(seed)
                result = noisy_encoded_expval_z(
                    tf.features, c.n_qubits, c.ops, weights, c.measured_wires, noise,
                    trajectories=trajectories, shots=shots, method=method, generator=generator,
                )
                metrics = classification_metrics(_logits(tf, result.mean), tf.labels, tf.classes)
                accs.append(float(metrics["accuracy"]))
                f1s.append(float(metrics["macro_f1"]))
                errs.append(float(result.stderr.mean()))
                used_method, used_t = result.method, result.trajectories
                if result.method == "exact":
                    seeds = [seed]
                    break
            row = NoiseRow(tf.checkpoint, channel, strength, noise.to_dict(), used_method,
                           summarize(accs), summarize(f1s), sum(errs) / len(errs), used_t,
                           shots, seeds, time.perf_counter() - start)
            echo(f"{tf.checkpoint}  {channel}={strength:g}  acc={row.accuracy.format()}  "
                 f"macro-F1={row.macro_f1.format()}  {used_method}"
                 + (f" (T={used_t}, ⟨Z⟩ s.e. {row.z_stderr:.4f})" if used_t else "")
                 + f"  {row.seconds:.1f} s")
            rows.append(row)
    return rows


def write_noise_report(rows: Sequence[NoiseRow], out: str | Path, title: str = "",
                       plot: bool = True) -> list[Path]:
    """Writes ``noise.md``, ``noise.csv`` (and ``noise.png``) into ``out``."""
    if not rows:
        raise DataError("no noise-study rows to write")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "noise.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["checkpoint", "channel", "strength", "method", "trajectories", "shots",
                         "n_seeds", "acc_mean", "acc_std", "f1_mean", "f1_std", "z_stderr",
                         "noise"])
        for r in rows:
            writer.writerow([str(r.checkpoint), r.channel, r.strength, r.method, r.trajectories,
                             "exact" if r.shots is None else r.shots, r.accuracy.n,
                             f"{r.accuracy.mean:.6f}", _num(r.accuracy.std),
                             f"{r.macro_f1.mean:.6f}", _num(r.macro_f1.std),
                             f"{r.z_stderr:.6f}", r.noise])
    first = rows[0]
    fixed = {k: v for k, v in first.noise.items() if k != first.channel and v}
    lines = ["# Noise study", ""]
    if title:
        lines += [title, ""]
    lines += [
        ("Test accuracy and macro-F1 (%) of trained quantum heads when every measured bit "
         "is read flipped with the given probability" if first.channel == "readout" else
         "Test accuracy and macro-F1 (%) of trained quantum heads when every ansatz gate is "
         f"followed by a {first.channel.replace('_', '-')} channel of the given strength "
         "on each of its wires")
        + (f"; fixed: {fixed}" if fixed else "")
        + f"; {'exact ⟨Z⟩' if first.shots is None else f'{first.shots} shots'}. "
        "`exact` = computed exactly (one-qubit-gate circuit); `trajectories` = Monte-Carlo "
        "mean ± std over the noise seeds (`n`), with the mean standard error of ⟨Z⟩.",
        "",
        "| checkpoint | strength | method | n | Acc | macro-F1 | ⟨Z⟩ s.e. |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r.checkpoint} | {r.strength:g} | {r.method}"
                     + (f" (T={r.trajectories})" if r.trajectories else "")
                     + f" | {r.accuracy.n} | {r.accuracy.format()} | {r.macro_f1.format()} | "
                     f"{r.z_stderr:.4f} |")
    checkpoints = list(dict.fromkeys(r.checkpoint for r in rows))
    if len(checkpoints) > 1:
        lines += ["", f"Pooled over {len(checkpoints)} checkpoints: mean ± std of the "
                  "per-checkpoint means.", "", "| strength | n | Acc | macro-F1 |",
                  "|---:|---:|---:|---:|"]
        for strength, acc, f1 in pooled(rows, key=lambda row: row.strength):
            lines.append(f"| {strength:g} | {acc.n} | {acc.format()} | {f1.format()} |")
    md_path = out / "noise.md"
    md_path.write_text("\n".join(lines) + "\n")
    written = [md_path, csv_path]
    if plot:
        png = out / "noise.png"
        _plot(rows, png)
        written.append(png)
    return written


def _num(value: float) -> str:
    return "" if not math.isfinite(value) else f"{value:.6f}"


def _plot(rows: Sequence[NoiseRow], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    positive = sorted({r.strength for r in rows if r.strength > 0})
    zero_x = positive[0] / 10 if positive else 1e-4
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    checkpoints = list(dict.fromkeys(r.checkpoint for r in rows))
    for i, ckpt in enumerate(checkpoints):
        group = sorted((r for r in rows if r.checkpoint == ckpt), key=lambda r: r.strength)
        for ax, metric in zip(axes, ("accuracy", "macro_f1"), strict=True):
            xs = [r.strength if r.strength > 0 else zero_x for r in group]
            ys = [getattr(r, metric).mean * 100 for r in group]
            es = [0.0 if getattr(r, metric).n < 2 else getattr(r, metric).std * 100
                  for r in group]
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, color=f"C{i % 10}",
                        label=f"{ckpt.parent.name}/{ckpt.name}" if len(checkpoints) > 1 else None)
    for ax, label in zip(axes, ("accuracy (%)", "macro-F1 (%)"), strict=True):
        ax.set_xscale("log")
        ax.set_xticks([zero_x, *positive], ["0", *(f"{s:g}" for s in positive)])
        ax.set_xlabel(f"{rows[0].channel.replace('_', '-')} probability")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if len(checkpoints) > 1:
        axes[0].legend(fontsize=6)
    fig.suptitle("test metrics vs noise strength", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
