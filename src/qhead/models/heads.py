"""Heads: unpooled feature map ``[B, C, h, w]`` → logits ``[B, num_classes]``.

Every entry of :data:`HEADS` is a factory
``(feature_shape: tuple[int, int, int], num_classes: int, **options) -> Head``; the
keyword options are ``ModelConfig.head_options`` (unknown keys are rejected, listing the
accepted ones, because the factory signature is the list of options).

=====================  ======================================================================
name                   what it is
=====================  ======================================================================
``classical``          the backbone's own head (resolved by ``build_model``)
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
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from qhead.errors import ConfigError
from qhead.registry import Registry, UnknownNameError

__all__ = [
    "ACTIVATIONS",
    "DEFAULT_MAX_QUBITS",
    "HEADS",
    "Head",
    "QuantumHead",
    "TwinHead",
    "build_head",
    "validate_head",
]

HEADS: Registry = Registry("head")
"""Head factories ``(feature_shape, num_classes, **options) -> Head``, by name."""

DEFAULT_MAX_QUBITS = 20
"""Largest amplitude-encoded map the quantum/twin heads accept by default.

A state of n qubits is 2^n floats per image (2^20 → 4 MiB in float32, 128 MiB for a
batch of 32, times the copies autograd keeps per gate). Raise it with
``head_options.max_qubits`` if the memory is there.
"""

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

# Options of the quantum head that the twin accepts and ignores, so that swapping the head
# of a quantum preset to ``twin`` (one override) keeps its FC stack and measured wires.
QUANTUM_ONLY_OPTIONS = ("ansatz", "layers", "ansatz_options", "freeze_circuit", "shots", "backend")


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


def _qubits_for(n_features: int) -> int:
    try:
        from qhead.simulator import num_qubits

        return int(num_qubits(n_features))
    except ImportError:  # simulator not importable: same rule, ceil(log2 N), at least 1
        return max(1, math.ceil(math.log2(n_features)))


def _measured(measured_wires: int | list[int] | None, n_qubits: int) -> list[int]:
    if measured_wires is None:
        return list(range(n_qubits))
    if isinstance(measured_wires, int):
        if not 1 <= measured_wires <= n_qubits:
            raise ConfigError(
                f"model.head_options.measured_wires: m={measured_wires} but the feature map "
                f"has {n_qubits} qubits; allowed: 1..{n_qubits} or a list of wires in "
                f"0..{n_qubits - 1}"
            )
        return list(range(measured_wires))
    wires = list(measured_wires)
    if not wires or any(not 0 <= w < n_qubits for w in wires) or len(set(wires)) != len(wires):
        raise ConfigError(
            f"model.head_options.measured_wires: {wires} is not a non-empty list of distinct "
            f"wires in 0..{n_qubits - 1} (the feature map has {n_qubits} qubits)"
        )
    return wires


def _check_qubits(feature_shape: tuple[int, int, int], max_qubits: int) -> int:
    n_features = math.prod(feature_shape)
    n = _qubits_for(n_features)
    if n > max_qubits:
        mib = 2**n * 4 / 2**20
        c, h, w = feature_shape
        raise ConfigError(
            f"model.head_options.max_qubits: the feature map {c}x{h}x{w} = {n_features} values "
            f"needs {n} qubits ({mib:.0f} MiB per image in float32), more than max_qubits="
            f"{max_qubits}; allowed: up to {max_qubits} qubits; use a smaller image_size or "
            "raise head_options.max_qubits"
        )
    return n


class QuantumHead(Head):
    """AE-VQC + FC stack: ``[B, C, h, w] -> [B, m] (in [-1, 1]) -> [B, classes]``.

    The whole map is flattened (no pooling), zero-padded to 2^n, L2-normalised and
    amplitude-encoded (:class:`qhead.quantum.AEVQC`); ``circuit.weights`` are the ansatz
    angles. With ``freeze_circuit`` they keep their initial values (not trainable).
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
        max_qubits: int = DEFAULT_MAX_QUBITS,
    ) -> None:
        super().__init__()
        from qhead.quantum import AEVQC

        n = _check_qubits(feature_shape, max_qubits)
        wires = _measured(measured_wires, n)
        try:
            self.circuit = AEVQC(
                math.prod(feature_shape),
                ansatz=ansatz,
                layers=layers,
                measured_wires=measured_wires if isinstance(measured_wires, int) else wires,
                shots=shots,
                backend=backend,
                **(ansatz_options or {}),
            )
        except UnknownNameError as error:
            raise ConfigError(f"model.head_options.ansatz: {error}") from None
        except (ConfigError, TypeError, ValueError, KeyError) as error:
            raise ConfigError(
                f"model.head_options: cannot build the AE-VQC circuit: {error}"
            ) from None
        if freeze_circuit:
            for p in self.circuit.parameters():
                p.requires_grad_(False)
        self.n_qubits = n
        self.measured_wires = wires
        mlp, width = _fc_stack(int(self.circuit.out_features), hidden, activation)
        self.pre = nn.Sequential(self.circuit, *mlp)
        self.fc = nn.Linear(width, num_classes)

    def __setattr__(self, name: str, value: Any) -> None:
        # ``head.circuit = other`` must change what runs: the forward pass goes through
        # ``pre[0]``, the same module, so both are replaced together.
        super().__setattr__(name, value)
        if name == "circuit" and "pre" in self._modules:
            self.pre[0] = value


class TwinFeatures(nn.Module):
    """The fixed quadratic features ``[⟨Z_k⟩₀, ⟨X_k⟩₀]`` of the amplitude-encoded map.

    ``[B, C, h, w] -> [B, 2m]``: first the m values ⟨Z_k⟩₀ of the measured wires, then
    the m values ⟨X_k⟩₀, for the state |ψ₀⟩ that encodes the flattened, zero-padded,
    L2-normalised map (same encoding as the quantum head). No parameters.
    """

    def __init__(self, n_qubits: int, wires: list[int]) -> None:
        super().__init__()
        self.n_qubits = n_qubits
        self.wires = list(wires)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z, x = encoded_zx(features, self.n_qubits, self.wires)
        return torch.cat([z, x], dim=1)


def encoded_zx(
    features: torch.Tensor, n_qubits: int, wires: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """⟨Z_k⟩₀ and ⟨X_k⟩₀ (each ``[B, m]``) of the amplitude-encoded ``features`` ``[B, ...]``.

    Uses the simulator's encoding and its one-qubit-unitary formula: ⟨X_k⟩ of ψ equals
    ⟨Z_k⟩ of H_k ψ, evaluated without evolving the state (O(2^n·m)).
    """
    from qhead.simulator import amplitude_encode, expval_z, hadamard_matrix, product_expval_z

    state = amplitude_encode(features, n_qubits)
    h = hadamard_matrix(state.dtype, state.device)
    z = expval_z(state, wires)
    x = product_expval_z(state, h.expand(len(wires), 2, 2), wires)
    return z, x


class TwinHead(Head):
    """Classical twin of Ansatz 1: ``[⟨Z_k⟩₀, ⟨X_k⟩₀]`` (2m features) + the same FC stack.

    Ansatz 1 (one RY(θ_k) per qubit) gives ⟨Z_k⟩ = cos θ_k ⟨Z_k⟩₀ − sin θ_k ⟨X_k⟩₀,
    so the quantum model's first Linear applied to ⟨Z⟩ is a special case of a Linear
    applied to these 2m features: the twin's model class contains Ansatz 1's. The
    quantum-only options (ansatz, layers, ...) are accepted and ignored so that a quantum
    preset becomes its twin by changing only ``head``.
    """

    def __init__(
        self,
        feature_shape: tuple[int, int, int],
        num_classes: int,
        measured_wires: int | list[int] | None = None,
        hidden: list[int] | None = None,
        activation: str = "tanh",
        max_qubits: int = DEFAULT_MAX_QUBITS,
        ansatz: str | None = None,
        layers: int | None = None,
        ansatz_options: dict[str, Any] | None = None,
        freeze_circuit: bool | None = None,
        shots: int | None = None,
        backend: str | None = None,
    ) -> None:
        super().__init__()
        del ansatz, layers, ansatz_options, freeze_circuit, shots, backend
        n = _check_qubits(feature_shape, max_qubits)
        wires = _measured(measured_wires, n)
        self.n_qubits = n
        self.measured_wires = wires
        self.encoder = TwinFeatures(n, wires)
        mlp, width = _fc_stack(2 * len(wires), hidden, activation)
        self.pre = nn.Sequential(self.encoder, *mlp)
        self.fc = nn.Linear(width, num_classes)


@HEADS.register("classical")
def _classical(feature_shape: tuple[int, int, int], num_classes: int, **options: Any) -> Head:
    """The backbone's own head: maxvit-classical for maxvit_t, avg-linear otherwise."""
    raise ConfigError(
        "model.head: 'classical' depends on the backbone; build it with build_model, which "
        "resolves it to maxvit-classical (maxvit_t) or avg-linear (other backbones)"
    )


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
    """Value checks of the options shared by several heads (no feature shape needed)."""
    where = "model.head_options"
    if "hidden" in options and options["hidden"] is not None:
        hidden = options["hidden"]
        if not isinstance(hidden, (list, tuple)) or any(not _is_int(h) or h < 1 for h in hidden):
            raise ConfigError(
                f"{where}.hidden: expected a list of positive widths (e.g. [512]), got {hidden!r}"
            )
    if "activation" in options and options["activation"] not in ACTIVATIONS:
        raise ConfigError(
            f"{where}.activation: unknown {options['activation']!r}; "
            f"allowed: {', '.join(ACTIVATIONS)}"
        )
    mw = options.get("measured_wires")
    if mw is not None and not (
        (_is_int(mw) and mw >= 1)
        or (isinstance(mw, (list, tuple)) and mw and all(_is_int(w) and w >= 0 for w in mw))
    ):
        raise ConfigError(
            f"{where}.measured_wires: expected a positive integer m or a list of wire "
            f"indices, got {mw!r}"
        )
    if "max_qubits" in options and not (
        _is_int(options["max_qubits"]) and options["max_qubits"] >= 1
    ):
        raise ConfigError(
            f"{where}.max_qubits: expected a positive integer, got {options['max_qubits']!r}"
        )


def _check_quantum_options(options: dict[str, Any]) -> None:
    where = "model.head_options"
    if "layers" in options and not (_is_int(options["layers"]) and options["layers"] >= 1):
        raise ConfigError(f"{where}.layers: expected an integer >= 1, got {options['layers']!r}")
    shots = options.get("shots")
    if shots is not None and not (_is_int(shots) and shots >= 1):
        raise ConfigError(
            f"{where}.shots: expected null (exact expectations) or an integer >= 1, got {shots!r}"
        )
    if "freeze_circuit" in options and not isinstance(options["freeze_circuit"], bool):
        raise ConfigError(
            f"{where}.freeze_circuit: expected true or false, got {options['freeze_circuit']!r}"
        )
    ao = options.get("ansatz_options")
    if ao is not None and not isinstance(ao, dict):
        raise ConfigError(f"{where}.ansatz_options: expected a mapping, got {ao!r}")
    try:
        from qhead.quantum import build_ansatz
    except ImportError:
        return  # the quantum layer checks the ansatz when the head is built
    try:
        build_ansatz(options.get("ansatz", "ansatz1"), **(ao or {}))
    except UnknownNameError as error:
        raise ConfigError(f"{where}.ansatz: {error}") from None
    except ConfigError as error:
        raise ConfigError(f"{where}.ansatz_options: {error}") from None


def validate_head(name: str, options: dict[str, Any]) -> None:
    """Checks a head name and its options without building anything.

    Raises:
        ConfigError: unknown head (listing the allowed ones), unknown option keys
            (listing the accepted ones), or a bad option value.
    """
    from qhead.models.backbones import check_options

    if not isinstance(name, str):
        raise ConfigError(f"model.head: expected a name, got {name!r}")
    try:
        factory = HEADS.get(name)
    except UnknownNameError as error:
        raise ConfigError(f"model.head: {error}") from None
    if name == "classical":
        if options:
            raise ConfigError(
                f"model.head_options: head 'classical' (the backbone's own head) takes no "
                f"options, got {sorted(options)}; name the concrete head (avg-linear, "
                "maxvit-classical, ...) to pass options"
            )
        return
    check_options(factory, options, f"model.head_options (head {name!r})", skip=2)
    _check_common_options(options)
    if name == "quantum":
        _check_quantum_options(options)


def build_head(
    name: str, feature_shape: tuple[int, int, int], num_classes: int, options: dict[str, Any]
) -> Head:
    """Builds a registered head for a feature map of shape ``(C, h, w)``.

    Raises:
        ConfigError: as :func:`validate_head`, plus the checks that need the shape
            (measured wires vs. qubits, simulator memory).
    """
    validate_head(name, options)
    opts = dict(options)
    try:
        return HEADS.get(name)(tuple(feature_shape), num_classes, **opts)
    except ConfigError:
        raise
    except TypeError as error:
        raise ConfigError(f"model.head_options (head {name!r}): {error}") from None
