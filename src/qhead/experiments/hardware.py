"""``qhead resources``: what a model's quantum head would cost on a device.

Builds the model (a preset with overrides, or a checkpoint), finds its AE-VQC circuit,
checks whether the backbone's map is non-negative (which PennyLane decomposition applies)
and collects :func:`qhead.quantum.resources.head_resources`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from qhead.errors import ConfigError
from qhead.quantum.resources import DeviceAssumptions, HeadResources, head_resources

__all__ = ["features_nonnegative", "find_circuit", "format_resources", "model_resources"]


def find_circuit(model: torch.nn.Module, where: str):
    """The model's AE-VQC module; ConfigError naming ``where`` if it has none."""
    from qhead.quantum import AEVQC

    circuits = [m for m in model.modules() if isinstance(m, AEVQC)]
    if not circuits:
        raise ConfigError(
            f"{where} has no quantum head (AE-VQC circuit); hardware resources, export and "
            "noise apply to model.head=quantum only"
        )
    return circuits[0]


def features_nonnegative(model: torch.nn.Module, image_size: int, probes: int = 2) -> bool:
    """Whether the backbone's map was ≥ 0 on ``probes`` seeded random images.

    A map that ends in a ReLU (ResNet-18's last block) is non-negative for every input; a
    signed value on any probe proves the opposite. Random inputs cannot prove
    non-negativity in general, so the result says "observed".
    """
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(probes, 3, image_size, image_size, generator=generator)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            feats = model.forward_features(images)
    finally:
        model.train(was_training)
    return bool((feats >= 0).all())


def model_resources(
    *,
    preset: str | None = None,
    overrides: Sequence[str] = (),
    checkpoint: str | Path | None = None,
    shots: Sequence[int] = (10, 100, 1000, 10000),
    train_images: int = 620,
    batch_size: int | None = None,
    epochs: int | None = None,
    training_shots: int = 1000,
    assumptions: DeviceAssumptions | None = None,
) -> tuple[HeadResources, dict[str, Any]]:
    """Resources of one model's quantum head.

    Args:
        preset, overrides: a model as ``qhead train`` resolves it (``--preset`` and
            ``key=value``); ignored when ``checkpoint`` is given (then only its config is
            used, with ``overrides`` refused).
        checkpoint: a trained checkpoint.
        shots: shot counts for the per-image table.
        train_images: training-set size (paper BUSI split: 620).
        batch_size, epochs: default to the config's.
        training_shots: shots per circuit when training on a device.
        assumptions: device rates.

    Returns:
        ``(resources, model_info)`` where ``model_info`` names the model, its feature map
        and whether the map was observed non-negative.
    """
    from qhead.models import build_model

    if checkpoint is not None:
        if overrides or preset:
            raise ConfigError(
                "qhead resources: give either a checkpoint or --preset/KEY=VALUE, not both"
            )
        from qhead.engine import load_checkpoint

        loaded = load_checkpoint(checkpoint)
        cfg, model, name = loaded.config, loaded.model, str(checkpoint)
    else:
        from qhead.engine import load_config

        cfg = load_config(preset=preset, overrides=list(overrides))
        name = preset or f"{cfg.model.backbone} + {cfg.model.head}"
        if cfg.model.head != "quantum":
            raise ConfigError(
                f"{name}: model.head={cfg.model.head!r} has no quantum circuit; hardware "
                "resources apply to model.head=quantum"
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lint findings are reported as dead angles
            torch.manual_seed(0)
            model = build_model(cfg.model)
    circuit = find_circuit(model, name)
    from qhead.quantum.lint import dead_parameters

    dead = dead_parameters(circuit.ops, circuit.n_qubits, circuit.measured_wires)
    nonneg = features_nonnegative(model, cfg.model.image_size)
    trainable = circuit.weights.numel() if circuit.weights.requires_grad else 0
    resources = head_resources(
        circuit.ops, circuit.n_qubits, circuit.measured_wires, circuit.in_features,
        trainable, dead_angles=len(dead), features_nonnegative=nonneg, shots=shots,
        train_images=train_images, batch_size=batch_size or cfg.batch_size,
        epochs=epochs or cfg.epochs, training_shots=training_shots, assumptions=assumptions,
    )
    info = {
        "model": name,
        "backbone": cfg.model.backbone,
        "image_size": cfg.model.image_size,
        "ansatz": circuit.ansatz.name,
        "layers": circuit.layers,
        "features_observed_nonnegative": nonneg,
    }
    return resources, info


def _fmt_seconds(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:,.1f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:,.1f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:,.1f} h"
    if seconds < 3 * 365 * 86400:
        return f"{seconds / 86400:,.1f} days"
    return f"{seconds / (365.25 * 86400):,.1f} years"


def _gates(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in sorted(counts.items()))


def format_resources(res: HeadResources, info: dict[str, Any]) -> str:
    """The markdown tables ``qhead resources`` prints."""
    prep, ans, full, tr = res.state_preparation, res.ansatz, res.full_circuit, res.training
    a = res.assumptions
    pl = prep["pennylane_mottonen"]
    sign = ("observed non-negative (post-ReLU)" if info["features_observed_nonnegative"]
            else "signed")
    pl_kind = "non-negative map" if info["features_observed_nonnegative"] else "signed map"
    counted = ("counted from the built decomposition" if prep["counted_from_decomposition"]
               else "closed forms (too many gates to build)")
    end_to_end = (1 + tr["circuits_per_image_weight_gradient"]
                  + tr["circuits_per_image_feature_gradient"])
    lines = [
        f"# Device resources: {info['model']}",
        "",
        f"{info['backbone']} at {info['image_size']} px: {res.n_features:,} features → "
        f"{res.n_qubits} qubits (2^{res.n_qubits} = {2**res.n_qubits:,} amplitudes), "
        f"{info['ansatz']} D={info['layers']}, {res.measured_wires} measured wires; map "
        f"{sign} on seeded random inputs.",
        "",
        "| part | gates | two-qubit gates | depth |",
        "|---|---|---:|---:|",
        f"| ansatz ({res.trainable_angles} trainable angles, {res.dead_angles} dead) | "
        f"{_gates(ans['gates'])} | {ans['two_qubit']:,} | {ans['depth']:,} |",
        f"| state preparation (qhead, Möttönen RY cascade; {counted}) | "
        f"{_gates(prep['gates'])} | "
        f"{prep['two_qubit']:,} | {prep['depth']:,} |",
        f"| state preparation (PennyLane MottonenStatePreparation, {pl_kind}) | "
        + ", ".join(f"{k} {v:,}" for k, v in pl.items() if k not in ("CNOT", "note", "depth"))
        + f" | {pl['CNOT']:,} | {format(pl['depth'], ',') if 'depth' in pl else '—'} |",
        f"| full circuit (qhead preparation + ansatz) | {full['total']:,} gates | "
        f"{full['two_qubit']:,} | {full['depth']:,} |",
        "",
        f"Closed forms (n = {res.n_qubits}): RY 2^n − 1 = {prep['closed_form']['RY']:,}, "
        f"CNOT 2^n − 2 = {prep['closed_form']['CNOT']:,}, depth 2^(n+1) − n − 2 = "
        f"{prep['closed_form']['depth']:,}; {pl['note']}.",
        f"Estimated success probability of one shot, (1 − ε₂)^CNOT · (1 − ε₁)^1q with "
        f"ε₂ = {a['two_qubit_error']:g}, ε₁ = {a['one_qubit_error']:g} (assumed): "
        f"{full['estimated_fidelity']:.3g}.",
        "",
        "Inference: one shot = one execution of the whole circuit (the state must be prepared "
        "again for every shot); all measured wires are read in each shot.",
        "",
        "| shots S | executions per image | max std error of ⟨Z_k⟩ (1/√S) | time per image |",
        "|---:|---:|---:|---:|",
    ]
    for row in res.shots:
        lines.append(
            f"| {row['shots']:,} | {row['executions_per_image']:,} | "
            f"{row['z_standard_error_max']:.4f} | {_fmt_seconds(row['seconds_per_image'])} |"
        )
    pe = tr["per_epoch"]
    s = tr["shots_per_circuit"]
    lines += [
        "",
        f"Training on a device ({tr['train_images']} training images, batch "
        f"{tr['batch_size']} → {tr['steps_per_epoch']} steps per epoch, {s:,} shots per "
        "circuit, parameter shift):",
        "",
        "| what | circuits per image | circuits per step | circuits per epoch | "
        "shots per epoch | time per epoch | time for all epochs |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| circuit weights only (forward + 2 × {res.trainable_angles} angles) | "
        f"{1 + tr['circuits_per_image_weight_gradient']:,} | "
        f"{tr['circuits_per_step_weights_only']:,} | {pe['weights_only_circuits']:,} | "
        f"{pe['weights_only_circuits'] * s:,} | "
        f"{_fmt_seconds(tr['seconds_per_epoch_weights_only'])} | "
        f"{_fmt_seconds(tr['seconds_weights_only'])} ({tr['epochs']} epochs) |",
        f"| end to end: + gradients into the features (2 × {prep['angles']:,} preparation "
        f"angles) | {end_to_end:,} | "
        f"{tr['circuits_per_step_end_to_end']:,} | {pe['end_to_end_circuits']:,} | "
        f"{pe['end_to_end_circuits'] * s:,} | "
        f"{_fmt_seconds(tr['seconds_per_epoch_end_to_end'])} | "
        f"{_fmt_seconds(tr['seconds_end_to_end'])} ({tr['epochs']} epochs) |",
        "",
        "Every state-preparation angle is a function of the features, so the gradient into "
        "the backbone needs two shifted circuits per angle per image: end-to-end training "
        "through the encoding is a simulator-only protocol.",
        "",
        f"Assumed device (not a vendor's figures; set with --shots-per-second, "
        f"--circuit-overhead-ms, --two-qubit-error, --one-qubit-error): "
        f"{a['shots_per_second']:,g} shots/s, {a['circuit_overhead_ms']:g} ms per distinct "
        "circuit, no queueing.",
    ]
    return "\n".join(lines)
