"""Gate counts and depth of circuits, and what running an AE-VQC head on a device costs.

Depth is the ASAP layering that ``qml.specs`` also uses: a gate starts one layer after
the latest gate on any of its wires; the depth is the number of layers.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from qhead.errors import ConfigError
from qhead.quantum.stateprep import mottonen_counts, mottonen_gates, pennylane_mottonen_counts

__all__ = [
    "COUNTED_MAX_QUBITS",
    "CircuitCounts",
    "DeviceAssumptions",
    "HeadResources",
    "circuit_counts",
    "head_resources",
]


COUNTED_MAX_QUBITS = 16
"""Up to this n the state preparation is counted from its built decomposition (2^(n+1)
gates: 131,070 at n = 16, a second); above it, from the closed forms (for the full circuit
the depth is then the sum of the two depths, an upper bound)."""


@dataclass(frozen=True)
class CircuitCounts:
    """Gates by name, totals and depth of one gate sequence."""

    gates: dict[str, int]
    total: int
    two_qubit: int
    depth: int


def circuit_counts(gates: Iterable[Any], n_wires: int) -> CircuitCounts:
    """Counts gates (anything with ``.name`` and ``.wires``) and the ASAP depth."""
    names: Counter[str] = Counter()
    layer = [0] * n_wires
    two = 0
    for gate in gates:
        names[gate.name] += 1
        wires = tuple(gate.wires)
        two += len(wires) >= 2
        start = 1 + max(layer[w] for w in wires)
        for w in wires:
            layer[w] = start
    return CircuitCounts(dict(names), sum(names.values()), two, max(layer, default=0))


@dataclass(frozen=True)
class DeviceAssumptions:
    """The device rates and error rates a wall-clock / fidelity estimate needs.

    They are assumptions for an estimate, not facts about any vendor's machine; every
    output that uses them prints them.

    Attributes:
        shots_per_second: repetition rate of one circuit (shots per second).
        circuit_overhead_ms: fixed cost per distinct circuit (loading new angles, compiling),
            in milliseconds; every image is a distinct circuit (its own state preparation).
        two_qubit_error: error probability per CNOT (for the fidelity estimate).
        one_qubit_error: error probability per one-qubit gate.
    """

    shots_per_second: float = 10_000.0
    circuit_overhead_ms: float = 100.0
    two_qubit_error: float = 1e-3
    one_qubit_error: float = 1e-4

    def __post_init__(self) -> None:
        if not self.shots_per_second > 0:
            raise ConfigError(f"shots_per_second must be > 0, got {self.shots_per_second!r}")
        if not self.circuit_overhead_ms >= 0:
            raise ConfigError(
                f"circuit_overhead_ms must be >= 0, got {self.circuit_overhead_ms!r}"
            )
        for name in ("two_qubit_error", "one_qubit_error"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ConfigError(f"{name} must lie in [0, 1), got {value!r}")

    def seconds(self, circuits: float, shots: int) -> float:
        """Wall-clock of ``circuits`` distinct circuits with ``shots`` shots each."""
        return circuits * (self.circuit_overhead_ms / 1000 + shots / self.shots_per_second)


@dataclass
class HeadResources:
    """What one AE-VQC head costs on a device (see :func:`head_resources`)."""

    n_qubits: int
    measured_wires: int
    n_features: int
    ansatz: dict[str, Any]
    state_preparation: dict[str, Any]
    full_circuit: dict[str, Any]
    trainable_angles: int
    dead_angles: int
    shots: list[dict[str, Any]] = field(default_factory=list)
    training: dict[str, Any] = field(default_factory=dict)
    assumptions: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _shot_row(shots: int, measured: int, assumptions: DeviceAssumptions) -> dict[str, Any]:
    return {
        "shots": shots,
        "executions_per_image": shots,
        "z_standard_error_max": 1 / math.sqrt(shots),
        "seconds_per_image": assumptions.seconds(1, shots),
        "measured_wires_per_execution": measured,
    }


def head_resources(
    ops: Sequence[Any],
    n_qubits: int,
    measured_wires: Sequence[int],
    n_features: int,
    trainable_angles: int,
    *,
    dead_angles: int = 0,
    features_nonnegative: bool | None = None,
    shots: Sequence[int] = (10, 100, 1000, 10000),
    train_images: int = 620,
    batch_size: int = 32,
    epochs: int = 200,
    training_shots: int = 1000,
    assumptions: DeviceAssumptions | None = None,
) -> HeadResources:
    """Counts for one head: ansatz, state preparation, shots, training on a device.

    Args:
        ops: the ansatz's gate list (:class:`qhead.simulator.Op`).
        n_qubits: n.
        measured_wires: the m measured wires.
        n_features: N, values of the encoded map (before zero padding to 2^n).
        trainable_angles: P, trainable circuit angles (the weights tensor's size).
        dead_angles: angles the linter proved cannot change any output.
        features_nonnegative: whether the encoded features are ≥ 0 (a ReLU map); decides
            which PennyLane decomposition applies (``None``: unknown).
        shots: shot counts for the per-image table.
        train_images, batch_size, epochs: the training run to cost (paper BUSI: 620, 32, 200).
        training_shots: shots per circuit when training on a device.
        assumptions: device rates (defaults: :class:`DeviceAssumptions`).

    Returns:
        a :class:`HeadResources`; its ``to_dict()`` is what ``qhead resources --json`` prints.
    """
    assumptions = assumptions or DeviceAssumptions()
    for name, value in (("train_images", train_images), ("batch_size", batch_size),
                        ("epochs", epochs), ("training_shots", training_shots)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shots):
        raise ConfigError(f"shots must be positive integers, got {list(shots)!r}")
    n = n_qubits
    ansatz = circuit_counts(ops, n)
    prep_closed = mottonen_counts(n)
    if n <= COUNTED_MAX_QUBITS:
        # the actual decomposition (a dense positive state; the counts do not depend on it)
        prep_gates = mottonen_gates([1.0] * 2**n)
        prep = circuit_counts(prep_gates, n)
        full = circuit_counts([*prep_gates, *ops], n)
    else:  # millions of gates: closed forms (tested equal to the decomposition for small n)
        gates = {"RY": prep_closed["RY"], "CNOT": prep_closed["CNOT"]}
        prep = CircuitCounts(gates, sum(gates.values()), gates["CNOT"], prep_closed["depth"])
        merged = Counter(gates) + Counter(ansatz.gates)
        full = CircuitCounts(dict(merged), prep.total + ansatz.total,
                             prep.two_qubit + ansatz.two_qubit, prep.depth + ansatz.depth)
    prep_angles = prep_closed["RY"]
    if features_nonnegative is True:
        pennylane = {**mottonen_counts(n), "note": "non-negative amplitudes: RY cascade only"}
        sign = "non-negative (post-ReLU map)"
    else:
        pennylane = {
            **pennylane_mottonen_counts(n),
            "note": "signs are phases π for PennyLane: RZ cascade added (upper bounds)",
        }
        sign = "unknown" if features_nonnegative is None else "signed"
    one_qubit = full.total - full.two_qubit
    fidelity = ((1 - assumptions.two_qubit_error) ** full.two_qubit
                * (1 - assumptions.one_qubit_error) ** one_qubit)
    steps = math.ceil(train_images / batch_size)
    weight_circuits = 2 * trainable_angles  # parameter shift: two circuits per angle
    feature_circuits = 2 * prep_angles  # every preparation angle depends on the features
    per_epoch = {
        "forward_circuits": train_images,
        "weight_gradient_circuits": weight_circuits * train_images,
        "feature_gradient_circuits": feature_circuits * train_images,
    }
    per_epoch["weights_only_circuits"] = train_images + per_epoch["weight_gradient_circuits"]
    per_epoch["end_to_end_circuits"] = (per_epoch["weights_only_circuits"]
                                        + per_epoch["feature_gradient_circuits"])
    training = {
        "train_images": train_images,
        "batch_size": batch_size,
        "steps_per_epoch": steps,
        "epochs": epochs,
        "shots_per_circuit": training_shots,
        "circuits_per_image_forward": 1,
        "circuits_per_image_weight_gradient": weight_circuits,
        "circuits_per_image_feature_gradient": feature_circuits,
        "circuits_per_step_weights_only": batch_size * (1 + weight_circuits),
        "circuits_per_step_end_to_end": batch_size * (1 + weight_circuits + feature_circuits),
        "per_epoch": per_epoch,
        "seconds_per_epoch_weights_only": assumptions.seconds(
            per_epoch["weights_only_circuits"], training_shots),
        "seconds_per_epoch_end_to_end": assumptions.seconds(
            per_epoch["end_to_end_circuits"], training_shots),
    }
    training["seconds_weights_only"] = training["seconds_per_epoch_weights_only"] * epochs
    training["seconds_end_to_end"] = training["seconds_per_epoch_end_to_end"] * epochs
    return HeadResources(
        n_qubits=n,
        measured_wires=len(measured_wires),
        n_features=n_features,
        ansatz=asdict(ansatz),
        state_preparation={
            "scheme": "Möttönen et al. 2004: uniformly controlled RY cascade (Gray code), "
                      "real amplitudes of any sign",
            "features": sign,
            **asdict(prep),
            "counted_from_decomposition": n <= COUNTED_MAX_QUBITS,
            "closed_form": prep_closed,
            "pennylane_mottonen": pennylane,
            "angles": prep_angles,
        },
        full_circuit={**asdict(full), "estimated_fidelity": fidelity},
        trainable_angles=trainable_angles,
        dead_angles=dead_angles,
        shots=[_shot_row(s, len(measured_wires), assumptions) for s in shots],
        training=training,
        assumptions=asdict(assumptions),
    )
