"""Parameter counts and descriptions of models, for ``qhead params`` and ``qhead describe``.

Building a backbone (and its dry run) is the slow part, and its size does not depend on
the head, so backbone facts are cached per (backbone, options, image size): a table of
all 16 presets builds each backbone once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from qhead.models.classifier import backbone_facts, count_parameters
from qhead.models.config import ModelConfig
from qhead.models.heads import Head

__all__ = ["ModelSummary", "summarize", "summarize_model"]


@dataclass
class ModelSummary:
    """What ``qhead params``/``qhead describe`` print about one model.

    Attributes:
        config: the model's config.
        head_name: concrete head (``classical`` resolved).
        feature_shape: ``(C, h, w)`` of the backbone's map at ``image_size``.
        n_qubits: qubits of the amplitude-encoded map (quantum/twin heads), else None.
        measured_wires: measured wires (quantum/twin heads), else None.
        backbone_params: trainable backbone parameters.
        head_params: Params* (trainable parameters after the backbone).
        circuit_params: trainable circuit angles (quantum head), else 0.
        frozen_params: non-trainable parameters in the head (frozen circuit).
        total_params: trainable parameters of the whole model.
        parts: trainable parameters per head part, name → count, in order.
        drawing: text drawing of the circuit (quantum head), else "".
        lint: circuit lint findings (quantum head), as messages.
        twin_of: for the twin, the circuit it is the control of and whether its model
            class is contained in the twin's (``"ansatz1 D=1 {'gate': 'RY'}; ..."``).
    """

    config: ModelConfig
    head_name: str
    feature_shape: tuple[int, int, int]
    n_qubits: int | None
    measured_wires: list[int] | None
    backbone_params: int
    head_params: int
    circuit_params: int
    frozen_params: int
    total_params: int
    parts: dict[str, int] = field(default_factory=dict)
    drawing: str = ""
    lint: list[str] = field(default_factory=list)
    twin_of: str = ""


def _head_parts(head: Head) -> dict[str, int]:
    parts: dict[str, int] = {}
    circuit = getattr(head, "circuit", None)
    if circuit is not None:
        parts["circuit"] = count_parameters(circuit)
    for i, module in enumerate(head.pre):
        if module is circuit or getattr(head, "encoder", None) is module:
            continue
        if isinstance(module, nn.Linear | nn.LayerNorm):
            parts[f"{type(module).__name__}[{i}]"] = count_parameters(module)
    parts["fc"] = count_parameters(head.fc)
    return parts


def _circuit_text(head: Head) -> tuple[str, list[str]]:
    from qhead.quantum import draw_ops

    circuit = head.circuit
    drawing = draw_ops(circuit.ops, circuit.n_qubits, list(circuit.measured_wires))
    return drawing, [str(w) for w in circuit.lint]


def summarize_model(
    cfg: ModelConfig,
    head: Head,
    feature_shape,
    backbone_params: int,
    with_circuit: bool = False,
    head_name: str | None = None,
) -> ModelSummary:
    """Summary of a head built for ``cfg`` on a backbone with ``backbone_params``.

    ``head_name`` is the concrete head (``classical`` resolved); default ``cfg.head``.
    """
    head_params = count_parameters(head)
    circuit = getattr(head, "circuit", None)
    drawing, lint = "", []
    if with_circuit and circuit is not None:
        drawing, lint = _circuit_text(head)
    return ModelSummary(
        config=cfg,
        head_name=head_name or cfg.head,
        feature_shape=tuple(feature_shape),
        n_qubits=getattr(head, "n_qubits", None),
        measured_wires=getattr(head, "measured_wires", None),
        backbone_params=backbone_params,
        head_params=head_params,
        circuit_params=count_parameters(circuit) if circuit is not None else 0,
        frozen_params=count_parameters(head, trainable_only=False) - head_params,
        total_params=backbone_params + head_params,
        parts=_head_parts(head),
        drawing=drawing,
        lint=lint,
        twin_of=_twin_text(head),
    )


def _twin_text(head: Head) -> str:
    twin_of = getattr(head, "twin_of", None)
    if twin_of is None:
        return ""
    name, layers, options = twin_of
    contained = "contains" if head.contains_circuit else "does not contain"
    return f"{name} D={layers} {options}; the twin's model class {contained} that circuit's"


def summarize(cfg: ModelConfig, with_circuit: bool = False) -> ModelSummary:
    """Summary of the model ``cfg`` describes (backbone facts cached, head built).

    Args:
        cfg: the model config.
        with_circuit: also draw and lint the circuit (quantum heads).

    Raises:
        ConfigError: as :func:`qhead.models.build_model`.
    """
    spec = cfg.head_spec()  # checked at construction (again only if cfg changed since)
    shape, backbone_params, classical_head = backbone_facts(cfg)
    spec = spec.resolve(classical_head)
    head = spec.build(shape, cfg.num_classes)
    return summarize_model(cfg, head, shape, backbone_params, with_circuit, spec.name)
