"""The rules for an AE-VQC circuit's options, each in one place with one message.

Two paths build a circuit, and each checks every rule exactly once:

* direct Python use, ``AEVQC(in_features, ansatz=..., layers=..., ...)``: the module
  builds a :class:`CircuitOptions` from its arguments (every shape-free rule) and then
  checks the register size and the measured wires against its ``in_features``;
* a model config, ``ModelConfig(head="quantum", head_options={...})``: the config's
  construction builds the :class:`CircuitOptions` (field names prefixed with
  ``model.head_options.``), the quantum head checks the register size against the
  feature-map shape, and hands both to ``AEVQC(..., options=...)``, which trusts them.

The register limit is the simulator's :data:`qhead.simulator.MAX_QUBITS`; a head's
``max_qubits`` option can lower it, never raise it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from qhead.errors import ConfigError
from qhead.quantum.ansatz import Ansatz, build_ansatz
from qhead.quantum.pennylane_backend import parse_backend
from qhead.registry import UnknownNameError
from qhead.simulator import MAX_QUBITS, num_qubits

__all__ = [
    "CircuitOptions",
    "check_backend",
    "check_max_qubits",
    "check_measured_wires",
    "check_register",
    "check_shots",
    "resolve_measured_wires",
    "wires_in_range",
]

MeasuredWires = int | tuple[int, ...] | None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_shots(shots: Any, field: str = "shots") -> int | None:
    """The shots rule: ``None`` (exact expectations) or an integer ≥ 1.

    Raises:
        ConfigError: ``"<field>: expected null (exact expectations) or an integer >= 1, …"``.
    """
    if shots is None or (_is_int(shots) and shots >= 1):
        return shots
    raise ConfigError(
        f"{field}: expected null (exact expectations) or an integer >= 1, got {shots!r}"
    )


def check_backend(backend: Any, field: str = "backend") -> tuple[str, str | None]:
    """The backend rule: ``torch``, ``pennylane`` or ``pennylane:<device>``.

    Returns:
        ``(name, device or None)``.

    Raises:
        ConfigError: naming ``field`` and the allowed forms.
    """
    if not isinstance(backend, str):
        raise ConfigError(
            f"{field}: expected 'torch', 'pennylane' or 'pennylane:<device>', got {backend!r}"
        )
    try:
        return parse_backend(backend)
    except ConfigError as error:  # its message starts with "backend must be"
        if field == "backend":
            raise
        raise ConfigError(f"{field}: {error}") from None


def check_layers(layers: Any, field: str = "layers") -> int:
    """The layers rule: D is an integer ≥ 1."""
    if _is_int(layers) and layers >= 1:
        return layers
    raise ConfigError(f"{field}: expected an integer >= 1, got {layers!r}")


def check_max_qubits(value: Any, field: str = "max_qubits") -> int:
    """The ``max_qubits`` rule: an integer in 1..MAX_QUBITS (it can lower the limit only)."""
    if _is_int(value) and 1 <= value <= MAX_QUBITS:
        return value
    raise ConfigError(
        f"{field}: expected an integer in 1..{MAX_QUBITS} (the simulator's limit, "
        f"qhead.simulator.MAX_QUBITS), got {value!r}"
    )


def check_measured_wires(value: Any, field: str = "measured_wires") -> MeasuredWires:
    """The shape-free measured-wires rule: null, a positive m, or a list of wire indices.

    Returns:
        ``None``, the int m, or the wires as a tuple (their range is checked by
        :func:`wires_in_range` once the qubit count is known).

    Raises:
        ConfigError: naming ``field`` and the allowed forms.
    """
    if value is None or (_is_int(value) and value >= 1):
        return value
    is_list = isinstance(value, Sequence) and not isinstance(value, str) and len(value) > 0
    if is_list and all(_is_int(w) and w >= 0 for w in value):
        return tuple(value)
    raise ConfigError(
        f"{field}: expected null (all wires), a positive integer m (wires 0..m-1) or a "
        f"list of at least one wire index, got {value!r}"
    )


def wires_in_range(value: MeasuredWires, n_qubits: int, field: str = "measured_wires"):
    """The measured-wires rule that needs the qubit count, on a checked value.

    Args:
        value: the result of :func:`check_measured_wires`.
        n_qubits: n, the register size.
        field: the name used in the message.

    Returns:
        The measured wires as a tuple: all n for ``None``, 0..m−1 for an int m.

    Raises:
        ConfigError: m > n, or wires repeated or out of 0..n−1.
    """
    if value is None:
        return tuple(range(n_qubits))
    if isinstance(value, int):
        if value > n_qubits:
            raise ConfigError(
                f"{field}: m={value} but the feature map has {n_qubits} qubits; allowed: "
                f"1..{n_qubits} or a list of distinct wires in 0..{n_qubits - 1}"
            )
        return tuple(range(value))
    if len(set(value)) != len(value) or any(w >= n_qubits for w in value):
        raise ConfigError(
            f"{field}: {list(value)} is not a non-empty list of distinct wires in "
            f"0..{n_qubits - 1} (the feature map has {n_qubits} qubits)"
        )
    return tuple(value)


def resolve_measured_wires(
    measured_wires: Any, n_qubits: int, field: str = "measured_wires"
) -> tuple[int, ...]:
    """None → all n wires; int m → wires 0..m−1; a list → those wires (distinct, in range).

    Both measured-wires rules (:func:`check_measured_wires`, then :func:`wires_in_range`).

    Raises:
        ConfigError: naming ``field`` and the allowed values.
    """
    return wires_in_range(check_measured_wires(measured_wires, field), n_qubits, field)


def check_register(
    feature_shape: int | Sequence[int], max_qubits: int = MAX_QUBITS, field: str = "in_features"
) -> int:
    """The register rule: the amplitude-encoded map fits in ``max_qubits`` qubits.

    Args:
        feature_shape: N, or the shape ``(C, h, w)`` of the map (named in the message).
        max_qubits: the limit (at most :data:`~qhead.simulator.MAX_QUBITS`).
        field: the name used in the message.

    Returns:
        n = ceil(log2 N), the qubit count.

    Raises:
        ConfigError: N is not a positive integer, or n > ``max_qubits``.
    """
    shape = (feature_shape,) if _is_int(feature_shape) else tuple(feature_shape)
    if not shape or any(not _is_int(s) or s < 1 for s in shape):
        raise ConfigError(f"{field}: expected a positive integer, got {feature_shape!r}")
    n_features = math.prod(shape)
    n = num_qubits(n_features)
    if n > max_qubits:
        mib = 2**n * 4 / 2**20
        what = f"{'x'.join(map(str, shape))} = {n_features} values" if len(shape) > 1 else (
            f"of {n_features} values"
        )
        raise ConfigError(
            f"{field}: the feature map {what} needs {n} qubits ({mib:.0f} MiB per example "
            f"in float32), more than max_qubits={max_qubits}; allowed: up to {max_qubits} "
            f"qubits (at most {2**max_qubits} values; the simulator limit of {MAX_QUBITS} "
            "qubits is qhead.simulator.MAX_QUBITS); pool or project the features, or use a "
            "smaller image_size"
        )
    return n


@dataclass(frozen=True)
class CircuitOptions:
    """The shape-free options of an AE-VQC circuit, checked at construction.

    Every rule runs once, here; :class:`~qhead.quantum.AEVQC` (``options=``) and the
    quantum head trust a constructed instance. The ansatz is built once, here.

    Attributes:
        ansatz: registry name in :data:`qhead.quantum.ANSATZES` or an
            :class:`~qhead.quantum.Ansatz`; after construction always the built Ansatz.
        layers: D ≥ 1.
        measured_wires: None (all), int m ≥ 1, or a tuple of wire indices (their range
            is checked against the qubit count by :func:`wires_in_range`).
        shots: None (exact) or an integer ≥ 1.
        backend: ``torch``, ``pennylane`` or ``pennylane:<device>``.
        ansatz_options: options of the ansatz factory (consumed by the built ansatz).
        where: prefix of the field names in messages (``"model.head_options."`` for a
            config); not part of equality.
        backend_parts: ``(backend name, device or None)`` of ``backend``, e.g.
            ``("pennylane", "default.qubit")`` (set at construction).
    """

    ansatz: str | Ansatz = "ansatz1"
    layers: int = 1
    measured_wires: MeasuredWires = None
    shots: int | None = None
    backend: str = "torch"
    ansatz_options: Mapping[str, Any] = field(default_factory=dict)
    where: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        w = self.where
        ao = {} if self.ansatz_options is None else self.ansatz_options
        if not isinstance(ao, Mapping):
            raise ConfigError(f"{w}ansatz_options: expected a mapping, got {ao!r}")
        check_layers(self.layers, f"{w}layers")
        set_ = object.__setattr__  # frozen: the checked values replace the given ones
        wires = check_measured_wires(self.measured_wires, f"{w}measured_wires")
        set_(self, "measured_wires", wires)
        check_shots(self.shots, f"{w}shots")
        set_(self, "backend_parts", check_backend(self.backend, f"{w}backend"))
        try:
            set_(self, "ansatz", build_ansatz(self.ansatz, **dict(ao)))
        except UnknownNameError as error:
            raise ConfigError(f"{w}ansatz: {error}") from None
        except ConfigError as error:
            raise ConfigError(f"{w}ansatz_options: {error}") from None
        set_(self, "ansatz_options", {})

