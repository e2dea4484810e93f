"""Heads: unpooled feature map ``[B, C, h, w]`` → logits ``[B, num_classes]``.

Every entry of :data:`HEADS` is a factory
``(feature_shape: tuple[int, int, int], num_classes: int, **options) -> Head``; the
keyword options are ``ModelConfig.head_options`` (unknown keys are rejected, listing the
accepted ones, because the factory signature is the list of options).

=====================  ======================================================================
name                   what it is
=====================  ======================================================================
``avg-linear``         torchvision ResNet-18's head: GAP + Linear(C, classes)
``maxvit-classical``   torchvision MaxViT-T's classifier: GAP, Flatten, LayerNorm(C),
                       Linear(C, C), Tanh, Linear(C, classes)
``max-linear``         control: global max pooling + Linear
``flatten-linear``     control: no pooling, Linear on the flattened map (keeps everything)
``quantum``            AE-VQC (amplitude encoding + ansatz + ⟨Z⟩ of m wires) + FC stack
``twin``               control: the 2m features ⟨Z_k⟩₀, ⟨X_k⟩₀ of the encoded map + FC stack
=====================  ======================================================================

The FC stack of ``quantum``/``twin`` (and, optionally, of the pooling heads) is
``hidden`` widths, each Linear followed by ``activation``, then ``Linear(·, classes)``.

``classical`` (:data:`CLASSICAL`) is not an entry: it is the config's name for "the
backbone's own head" (``Backbone.classical_head``: ``maxvit-classical`` for
``maxvit_t``, ``avg-linear`` otherwise), checked by :func:`validate_head` and resolved by
:meth:`HeadSpec.resolve` once the backbone is known; that is the only place it is handled.

Options are checked once, by :func:`validate_head` (which ``ModelConfig`` runs at
construction); the head classes trust what it returns (:class:`HeadSpec`). A head whose
factory has a keyword-only ``circuit`` parameter (``quantum``, ``twin``) gets its circuit
options (``ansatz``, ``layers``, ``measured_wires``, ``ansatz_options``, and ``shots``,
``backend`` where it takes them) checked as one :class:`qhead.quantum.CircuitOptions`.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from qhead.errors import ConfigError
from qhead.quantum import AEVQC, CircuitOptions, RotationLayers
from qhead.quantum.options import check_max_qubits, check_register, wires_in_range
from qhead.registry import Registry
from qhead.simulator import MAX_QUBITS, amplitude_encode, z_and_x

__all__ = [
    "ACTIVATIONS",
    "CLASSICAL",
    "HEADS",
    "Head",
    "HeadSpec",
    "QuantumHead",
    "TwinHead",
    "build_head",
    "encoded_zx",
    "validate_head",
]

HEADS: Registry = Registry("head")
"""Head factories ``(feature_shape, num_classes, **options) -> Head``, by name."""

CLASSICAL = "classical"
"""The head name meaning "the backbone's own head" (resolved by :meth:`HeadSpec.resolve`)."""

_WHERE = "model.head_options."

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "identity": nn.Identity,
}
"""Activation names accepted by ``head_options.activation``."""



class Head(nn.Module):
    """Base class: ``forward(f [B, C, h, w], pre_logits=False) -> [B, classes]``.

    Subclasses set ``self.pre`` (features → pre-logit vector ``[B, D]``) and ``self.fc``
    (the final ``Linear(D, classes)``), which is what ``reset_classifier`` replaces.
    """

    pre: nn.Module
    fc: nn.Linear

    def forward(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Args: features ``[B, C, h, w]``. Returns ``[B, classes]`` or ``[B, D]``."""
        z = self.pre(features)
        return z if pre_logits else self.fc(z)

    def reset_classifier(self, num_classes: int) -> None:
        """Replaces the final Linear by a fresh ``Linear(D, num_classes)``."""
        fc = self.fc
        self.fc = nn.Linear(fc.in_features, num_classes, bias=fc.bias is not None).to(
            fc.weight.device, fc.weight.dtype
        )


def _fc_stack(
    in_features: int, hidden: list[int] | None, activation: str
) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden or []:
        layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
        width = h
    return nn.Sequential(*layers), width


class PooledHead(Head):
    """Pooling (avg, max or none), flatten, FC stack, Linear: the pooling heads."""

    def __init__(
        self,
        feature_shape: tuple[int, int, int],
        num_classes: int,
        pool: str,
        hidden: list[int] | None = None,
        activation: str = "tanh",
    ) -> None:
        super().__init__()
        c, h, w = feature_shape
        pools: dict[str, nn.Module] = {
            "avg": nn.AdaptiveAvgPool2d(1),
            "max": nn.AdaptiveMaxPool2d(1),
            "none": nn.Identity(),
        }
        width = c if pool != "none" else c * h * w
        mlp, width = _fc_stack(width, hidden, activation)
        self.pool_type = pool
        self.pre = nn.Sequential(pools[pool], nn.Flatten(), *mlp)
        self.fc = nn.Linear(width, num_classes)


class MaxViTClassicalHead(Head):
    """torchvision ``maxvit_t``'s classifier, initialised as torchvision does.

    GAP, Flatten, LayerNorm(C), Linear(C, C), Tanh, Linear(C, classes). torchvision builds
    the last Linear with ``bias=False``; the paper's Params* (e.g. 269,836 for 12 classes)
    count a bias, so ``last_bias=True`` is the default here.
    """

    def __init__(
        self, feature_shape: tuple[int, int, int], num_classes: int, last_bias: bool = True
    ) -> None:
        super().__init__()
        c = feature_shape[0]
        self.pre = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(c), nn.Linear(c, c), nn.Tanh()
        )
        self.fc = nn.Linear(c, num_classes, bias=last_bias)
        for m in self.modules():  # torchvision MaxVit._init_weights
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)


class QuantumHead(Head):
    """AE-VQC + FC stack: ``[B, C, h, w] -> [B, m] (in [-1, 1]) -> [B, classes]``.

    The whole map is flattened (no pooling), zero-padded to 2^n, L2-normalised and
    amplitude-encoded (:class:`qhead.quantum.AEVQC`); ``circuit.weights`` are the ansatz
    angles. With ``freeze_circuit`` they keep their initial values (not trainable).

    Build it with :func:`build_head` (or from a config), which checks the options; the
    constructor trusts them, except the circuit options when ``circuit`` is not given.
    ``max_qubits`` (at most :data:`qhead.simulator.MAX_QUBITS`) is checked against the
    feature-map shape here, the only place that knows it.
    """

    def __init__(
        self,
        feature_shape: tuple[int, int, int],
        num_classes: int,
        ansatz: str = "ansatz1",
        layers: int = 1,
        measured_wires: int | list[int] | None = None,
        ansatz_options: dict[str, Any] | None = None,
        hidden: list[int] | None = None,
        activation: str = "tanh",
        freeze_circuit: bool = False,
        shots: int | None = None,
        backend: str = "torch",
        max_qubits: int = MAX_QUBITS,
        *,
        circuit: CircuitOptions | None = None,
    ) -> None:
        super().__init__()
        if circuit is None:  # built without validate_head: check the circuit options now
            circuit = CircuitOptions(
                ansatz, layers, measured_wires, shots, backend, ansatz_options or {}, _WHERE
            )
        n = check_register(tuple(feature_shape), max_qubits, f"{_WHERE}max_qubits")
        self.circuit = AEVQC(math.prod(feature_shape), options=circuit)
        if freeze_circuit:
            for p in self.circuit.parameters():
                p.requires_grad_(False)
        self.n_qubits = n
        self.measured_wires = list(self.circuit.measured_wires)
        mlp, width = _fc_stack(int(self.circuit.out_features), hidden, activation)
        self.pre = nn.Sequential(self.circuit, *mlp)
        self.fc = nn.Linear(width, num_classes)

    def __setattr__(self, name: str, value: Any) -> None:
        # ``head.circuit = other`` must change what runs: the forward pass goes through
        # ``pre[0]``, the same module, so both are replaced together.
        super().__setattr__(name, value)
        if name == "circuit" and "pre" in self._modules:
            self.pre[0] = value


def encoded_zx(
    features: torch.Tensor, n_qubits: int, wires: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """⟨Z_k⟩₀ and ⟨X_k⟩₀ (each ``[B, m]``) of the amplitude-encoded ``features`` ``[B, ...]``.

    The simulator's :func:`~qhead.simulator.amplitude_encode` then its
    :func:`~qhead.simulator.z_and_x`: the functions (and CPU kernels) the quantum head's
    Ansatz-1 formula ⟨Z_k⟩ = cos θ_k ⟨Z_k⟩₀ − sin θ_k ⟨X_k⟩₀ is computed from.
    """
    return z_and_x(amplitude_encode(features, n_qubits), wires)


class TwinFeatures(nn.Module):
    """The fixed quadratic features ``[⟨Z_k⟩₀, ⟨X_k⟩₀]`` of the amplitude-encoded map.

    ``[B, C, h, w] -> [B, 2m]``: first the m values ⟨Z_k⟩₀ of the measured wires, then
    the m values ⟨X_k⟩₀, for the state |ψ₀⟩ that encodes the flattened, zero-padded,
    L2-normalised map (same encoding as the quantum head). No parameters. Like
    :class:`~qhead.quantum.AEVQC`, it computes in float32 (float64 for float64 input)
    with autocast disabled, so it runs the quantum head's numerics under AMP too.
    """

    def __init__(self, n_qubits: int, wires: list[int]) -> None:
        super().__init__()
        self.n_qubits = n_qubits
        self.wires = list(wires)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        dtype = torch.float64 if features.dtype == torch.float64 else torch.float32
        with torch.autocast(device_type=features.device.type, enabled=False):
            flat = features.reshape(features.shape[0], -1).to(dtype)
            z, x = encoded_zx(flat, self.n_qubits, self.wires)
        return torch.cat([z, x], dim=1)


class TwinHead(Head):
    """Classical twin of Ansatz 1: ``[⟨Z_k⟩₀, ⟨X_k⟩₀]`` (2m features) + the same FC stack.

    Ansatz 1 (one RY(θ_k) per qubit) gives ⟨Z_k⟩ = cos θ_k ⟨Z_k⟩₀ − sin θ_k ⟨X_k⟩₀,
    so the quantum model's first Linear applied to ⟨Z⟩ is a special case of a Linear
    applied to these 2m features: the twin's model class contains Ansatz 1's.

    ``ansatz``, ``layers`` and ``ansatz_options`` name the circuit this head is the
    control of (so a quantum preset becomes its twin by changing only ``head``); they
    are checked like the quantum head's and kept as :attr:`twin_of`, and
    :attr:`contains_circuit` says whether the twin's model class contains that
    circuit's (Ansatz 1, any rotation: yes). They do not change the features. Options
    that only mean something for a simulated circuit (``shots``, ``backend``,
    ``freeze_circuit``) are refused.

    Attributes:
        twin_of: ``(ansatz name, layers, ansatz options)`` of the controlled circuit.
        contains_circuit: whether that circuit's model class is contained in the twin's.
    """

    def __init__(
        self,
        feature_shape: tuple[int, int, int],
        num_classes: int,
        measured_wires: int | list[int] | None = None,
        hidden: list[int] | None = None,
        activation: str = "tanh",
        max_qubits: int = MAX_QUBITS,
        ansatz: str = "ansatz1",
        layers: int = 1,
        ansatz_options: dict[str, Any] | None = None,
        *,
        circuit: CircuitOptions | None = None,
    ) -> None:
        super().__init__()
        if circuit is None:  # built without validate_head: check the circuit options now
            circuit = CircuitOptions(
                ansatz, layers, measured_wires, ansatz_options=ansatz_options or {}, where=_WHERE
            )
        n = check_register(tuple(feature_shape), max_qubits, f"{_WHERE}max_qubits")
        wires = list(wires_in_range(circuit.measured_wires, n, f"{_WHERE}measured_wires"))
        self.n_qubits = n
        self.measured_wires = wires
        self.twin_of = (circuit.ansatz.name, circuit.layers, circuit.ansatz.options())
        self.contains_circuit = isinstance(circuit.ansatz, RotationLayers)
        self.encoder = TwinFeatures(n, wires)
        mlp, width = _fc_stack(2 * len(wires), hidden, activation)
        self.pre = nn.Sequential(self.encoder, *mlp)
        self.fc = nn.Linear(width, num_classes)


@HEADS.register("avg-linear")
def _avg_linear(
    feature_shape: tuple[int, int, int],
    num_classes: int,
    hidden: list[int] | None = None,
    activation: str = "tanh",
) -> Head:
    """torchvision ResNet-18 head: global average pooling + Linear(C, classes)."""
    return PooledHead(feature_shape, num_classes, "avg", hidden, activation)


@HEADS.register("max-linear")
def _max_linear(
    feature_shape: tuple[int, int, int],
    num_classes: int,
    hidden: list[int] | None = None,
    activation: str = "tanh",
) -> Head:
    """Control: global max pooling + Linear(C, classes)."""
    return PooledHead(feature_shape, num_classes, "max", hidden, activation)


@HEADS.register("flatten-linear")
def _flatten_linear(
    feature_shape: tuple[int, int, int],
    num_classes: int,
    hidden: list[int] | None = None,
    activation: str = "tanh",
) -> Head:
    """Control: no pooling, Linear(C*h*w, classes) on the flattened map."""
    return PooledHead(feature_shape, num_classes, "none", hidden, activation)


@HEADS.register("maxvit-classical")
def _maxvit_classical(
    feature_shape: tuple[int, int, int], num_classes: int, last_bias: bool = True
) -> Head:
    """torchvision MaxViT-T classifier: GAP, LayerNorm, Linear(C,C), Tanh, Linear(C, classes)."""
    return MaxViTClassicalHead(feature_shape, num_classes, last_bias)


HEADS.add(
    "quantum",
    QuantumHead,
    help="AE-VQC (amplitude encoding, ansatz, <Z> of m wires) + FC stack (the paper's head).",
)
HEADS.add(
    "twin",
    TwinHead,
    help="Control: classical twin of Ansatz 1, features <Z_k>0, <X_k>0 + the same FC stack.",
)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_common_options(options: dict[str, Any]) -> None:
    """Value checks of the options that are not circuit options (no feature shape needed)."""
    if "hidden" in options and options["hidden"] is not None:
        hidden = options["hidden"]
        if not isinstance(hidden, (list, tuple)) or any(not _is_int(h) or h < 1 for h in hidden):
            raise ConfigError(
                f"{_WHERE}hidden: expected a list of positive widths (e.g. [512]), got {hidden!r}"
            )
    if "activation" in options and options["activation"] not in ACTIVATIONS:
        raise ConfigError(
            f"{_WHERE}activation: unknown {options['activation']!r}; "
            f"allowed: {', '.join(ACTIVATIONS)}"
        )
    if "max_qubits" in options:
        check_max_qubits(options["max_qubits"], f"{_WHERE}max_qubits")
    for flag in ("freeze_circuit", "last_bias"):
        if flag in options and not isinstance(options[flag], bool):
            raise ConfigError(f"{_WHERE}{flag}: expected true or false, got {options[flag]!r}")


_CIRCUIT_FIELDS = tuple(
    f.name for f in dataclasses.fields(CircuitOptions) if f.name != "where"
)


def _takes_circuit(factory: Any) -> bool:
    parameter = inspect.signature(factory).parameters.get("circuit")
    return parameter is not None and parameter.kind is inspect.Parameter.KEYWORD_ONLY


@dataclass(frozen=True)
class HeadSpec:
    """A head name and its checked options: what :func:`validate_head` returns.

    ``ModelConfig`` keeps the spec of its head, so ``build_model`` builds from it
    without checking anything again.

    Attributes:
        name: a name in :data:`HEADS`, or :data:`CLASSICAL`.
        options: the factory's keyword options, checked (circuit options excluded).
        circuit: the checked circuit options, for factories that take ``circuit``.
    """

    name: str
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    circuit: CircuitOptions | None = None

    def resolve(self, classical_head: str | None) -> HeadSpec:
        """The spec of a concrete head: :data:`CLASSICAL` → ``classical_head`` (the
        backbone's ``Backbone.classical_head``), any other name unchanged.

        Raises:
            ConfigError: :data:`CLASSICAL` without a backbone to resolve it.
        """
        if self.name != CLASSICAL:
            return self
        if classical_head is None:
            raise ConfigError(
                "model.head: 'classical' depends on the backbone; build it with build_model, "
                "which resolves it to the backbone's own head (maxvit-classical for "
                "maxvit_t, avg-linear for other backbones), or name that head"
            )
        return HeadSpec(classical_head)

    def build(
        self,
        feature_shape: tuple[int, int, int],
        num_classes: int,
        classical_head: str | None = None,
    ) -> Head:
        """Builds the head for a feature map of shape ``(C, h, w)``.

        Args:
            feature_shape: ``(C, h, w)``.
            num_classes: outputs of the final Linear.
            classical_head: the backbone's own head, what :data:`CLASSICAL` means.

        Raises:
            ConfigError: only the checks that need the shape (qubits vs. ``max_qubits``,
                measured wires vs. qubits).
        """
        spec = self.resolve(classical_head)
        extra = {} if spec.circuit is None else {"circuit": spec.circuit}
        return HEADS.get(spec.name)(tuple(feature_shape), num_classes, **spec.options, **extra)


def head_names() -> list[str]:
    """Every name ``model.head`` accepts: the :data:`HEADS` entries and :data:`CLASSICAL`."""
    return sorted([*HEADS.names(), CLASSICAL])


def validate_head(name: str, options: dict[str, Any]) -> HeadSpec:
    """Checks a head name and its options without building anything (once per config).

    Returns:
        The :class:`HeadSpec` to build from.

    Raises:
        ConfigError: unknown head (listing the allowed ones), unknown option keys
            (listing the accepted ones), or a bad option value.
    """
    from qhead.models.backbones import check_options

    if not isinstance(name, str):
        raise ConfigError(f"model.head: expected a name, got {name!r}")
    if name == CLASSICAL:
        if options:
            raise ConfigError(
                f"model.head_options: head 'classical' (the backbone's own head) takes no "
                f"options, got {sorted(options)}; name the concrete head (avg-linear, "
                "maxvit-classical, ...) to pass options"
            )
        return HeadSpec(CLASSICAL)
    if name not in HEADS:
        raise ConfigError(
            f"model.head: unknown head {name!r}; allowed: {', '.join(head_names())}"
        )
    factory = HEADS.get(name)
    check_options(factory, options, f"model.head_options (head {name!r})", skip=2)
    _check_common_options(options)
    rest = dict(options)
    circuit = None
    if _takes_circuit(factory):
        given = {key: rest.pop(key) for key in _CIRCUIT_FIELDS if key in rest}
        if given.get("ansatz_options") is None:
            given.pop("ansatz_options", None)
        circuit = CircuitOptions(**given, where=_WHERE)
    return HeadSpec(name, rest, circuit)


def build_head(
    name: str, feature_shape: tuple[int, int, int], num_classes: int, options: dict[str, Any]
) -> Head:
    """Checks a head's options (:func:`validate_head`) and builds it for a ``(C, h, w)`` map.

    Raises:
        ConfigError: as :func:`validate_head`, plus the checks that need the shape
            (measured wires vs. qubits, qubits vs. ``max_qubits``); ``classical``, which
            needs the backbone (use :func:`qhead.models.build_model`).
    """
    return validate_head(name, options).build(feature_shape, num_classes)
