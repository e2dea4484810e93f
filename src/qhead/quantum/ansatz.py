"""Ansätze: named, parametrised gate lists, registered in :data:`ANSATZES`.

An ansatz declares the shape of its weights (like PennyLane templates'
``shape(n_layers, n_wires)``) and its gate list (:class:`qhead.simulator.Op`), which
is all the simulator, the PennyLane backend, the linter and the drawer need.

Register your own in a few lines::

    from qhead.quantum import ANSATZES, Ansatz
    from qhead.simulator import Op

    @ANSATZES.register("rx-ry")
    class RxRy(Ansatz):
        \"\"\"RX then RY on every qubit, per layer.\"\"\"

        def shape(self, layers, n_wires):
            return (layers, 2, n_wires)

        def ops(self, layers, n_wires):
            return [Op(g, (q,), (d, i, q)) for d in range(layers)
                    for i, g in enumerate(("RX", "RY")) for q in range(n_wires)]

after which ``AEVQC(25088, ansatz="rx-ry", layers=2)`` uses it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

from qhead.errors import ConfigError
from qhead.registry import Registry
from qhead.simulator import GATES, Op

__all__ = [
    "ANSATZES",
    "Ansatz",
    "BasicEntanglerLayers",
    "EntanglingLayers",
    "RotationLayers",
    "SimplifiedTwoDesign",
    "StronglyEntanglingLayers",
    "build_ansatz",
]

#: Registry of ansatz factories: ``ANSATZES.get(name)(**options) -> Ansatz``.
ANSATZES: Registry = Registry("ansatz")

_ROTATIONS = ("RX", "RY", "RZ")


class Ansatz:
    """Base class: subclasses define :meth:`shape` and :meth:`ops`."""

    #: registry name, filled in by :func:`build_ansatz` when left empty.
    name: str = ""

    def shape(self, layers: int, n_wires: int) -> tuple[int, ...]:
        """Shape of the weight tensor for ``layers`` layers on ``n_wires`` wires."""
        raise NotImplementedError

    def ops(self, layers: int, n_wires: int) -> list[Op]:
        """The gate list; ``Op.param`` indexes the weight tensor of :meth:`shape`."""
        raise NotImplementedError

    def num_params(self, layers: int, n_wires: int) -> int:
        """Number of trainable angles."""
        return math.prod(self.shape(layers, n_wires))

    def options(self) -> dict:
        """Constructor options (for configs and checkpoints); none by default."""
        return {}

    def weight_parts(self, layers: int, n_wires: int) -> dict[str, tuple[int, ...]]:
        """The named weight tensors the circuit's PennyLane template takes, in order.

        ``AEVQC.weights`` is always one tensor of :meth:`shape`; an ansatz whose
        template takes several (``simplified-two-design``: ``initial_layer_weights``
        and ``weights``) stores them concatenated, flattened, in this order, and
        :meth:`split_weights` returns the views. By default one part, the whole tensor.
        """
        return {"weights": tuple(self.shape(layers, n_wires))}

    def split_weights(self, weights, layers: int, n_wires: int) -> dict:
        """Views of ``weights`` (one tensor of :meth:`shape`) as :meth:`weight_parts`."""
        parts = self.weight_parts(layers, n_wires)
        if len(parts) == 1:
            return {next(iter(parts)): weights}
        flat, out, start = weights.reshape(-1), {}, 0
        for name, shape in parts.items():
            size = math.prod(shape)
            out[name] = flat[start : start + size].reshape(shape)
            start += size
        return out


@ANSATZES.register("ansatz1")
@dataclass(frozen=True)
class RotationLayers(Ansatz):
    """Ansatz 1: D layers of one rotation (RX, RY or RZ) on every qubit; weights [D, n].

    Args:
        gate: the rotation, "RY" (default), "RX" or "RZ".
    """

    gate: str = "RY"
    name: str = "ansatz1"

    def __post_init__(self) -> None:
        if self.gate not in _ROTATIONS:
            raise ConfigError(f"ansatz1.gate must be one of {_ROTATIONS}, got {self.gate!r}")

    def shape(self, layers: int, n_wires: int) -> tuple[int, ...]:
        return (layers, n_wires)

    def ops(self, layers: int, n_wires: int) -> list[Op]:
        return [Op(self.gate, (q,), (d, q)) for d in range(layers) for q in range(n_wires)]

    def options(self) -> dict:
        return {"gate": self.gate}


@ANSATZES.register("ansatz2")
@dataclass(frozen=True)
class EntanglingLayers(Ansatz):
    """Ansatz 2: H on every qubit, then D × [two rotations per qubit, CNOT chain or ring].

    Weights ``[D, 2, n]``: ``weights[d, i, q]`` is the angle of the i-th gate of
    ``gates`` on qubit q in layer d (second axis in gate order).

    Args:
        gates: the two rotations in the order applied, default ("RY", "RZ").
        entangler: "chain" — CNOT(0,1), CNOT(1,2), …, CNOT(n−2,n−1); "ring" — the chain
            followed by CNOT(n−1,0) when n ≥ 3 (for n = 2 the ring is the chain, as in
            PennyLane's ``ring`` pattern).
    """

    gates: Sequence[str] = ("RY", "RZ")
    entangler: str = "chain"
    name: str = "ansatz2"

    def __post_init__(self) -> None:
        gates = tuple(self.gates)
        if len(gates) != 2 or any(g not in _ROTATIONS for g in gates):
            raise ConfigError(
                f"ansatz2.gates must be two rotations from {_ROTATIONS}, got {self.gates!r}"
            )
        object.__setattr__(self, "gates", gates)
        if self.entangler not in ("chain", "ring"):
            raise ConfigError(
                f"ansatz2.entangler must be 'chain' or 'ring', got {self.entangler!r}"
            )

    def shape(self, layers: int, n_wires: int) -> tuple[int, ...]:
        return (layers, 2, n_wires)

    def cnot_pairs(self, n_wires: int) -> list[tuple[int, int]]:
        """The entangler's (control, target) pairs in order."""
        pairs = [(q, q + 1) for q in range(n_wires - 1)]
        if self.entangler == "ring" and n_wires >= 3:
            pairs.append((n_wires - 1, 0))
        return pairs

    def ops(self, layers: int, n_wires: int) -> list[Op]:
        ops = [Op("H", (q,)) for q in range(n_wires)]
        for d in range(layers):
            for i, gate in enumerate(self.gates):
                ops += [Op(gate, (q,), (d, i, q)) for q in range(n_wires)]
            ops += [Op("CNOT", pair) for pair in self.cnot_pairs(n_wires)]
        return ops

    def options(self) -> dict:
        return {"gates": list(self.gates), "entangler": self.entangler}


def _ring(n_wires: int, distance: int = 1) -> list[tuple[int, int]]:
    """CNOT pairs (i, i + distance mod n) for every wire i; one CNOT for n = 2 at distance
    1, as PennyLane's ring patterns; none for n = 1."""
    if n_wires == 1:
        return []
    if n_wires == 2 and distance == 1:
        return [(0, 1)]
    return [(i, (i + distance) % n_wires) for i in range(n_wires)]


@ANSATZES.register("basic-entangler")
@dataclass(frozen=True)
class BasicEntanglerLayers(Ansatz):
    """PennyLane's ``BasicEntanglerLayers``: per layer one rotation on every wire, then a
    ring of CNOTs (i, i+1 mod n); one CNOT for n = 2. Weights ``[D, n]``, as
    ``qml.BasicEntanglerLayers.shape(D, n)``.

    Args:
        rotation: "RX" (PennyLane's default), "RY" or "RZ".
    """

    rotation: str = "RX"
    name: str = "basic-entangler"

    def __post_init__(self) -> None:
        if self.rotation not in _ROTATIONS:
            raise ConfigError(
                f"basic-entangler.rotation must be one of {_ROTATIONS}, got {self.rotation!r}"
            )

    def shape(self, layers: int, n_wires: int) -> tuple[int, ...]:
        return (layers, n_wires)

    def ops(self, layers: int, n_wires: int) -> list[Op]:
        ops: list[Op] = []
        for d in range(layers):
            ops += [Op(self.rotation, (q,), (d, q)) for q in range(n_wires)]
            ops += [Op("CNOT", pair) for pair in _ring(n_wires)]
        return ops

    def options(self) -> dict:
        return {"rotation": self.rotation}


@ANSATZES.register("strongly-entangling")
@dataclass(frozen=True)
class StronglyEntanglingLayers(Ansatz):
    """PennyLane's ``StronglyEntanglingLayers``: per layer l a general rotation
    ``Rot(φ, θ, ω) = RZ(ω)·RY(θ)·RZ(φ)`` on every wire (written as those three gates),
    then CNOT(i, i + r_l mod n) for every wire i, with range r_l = (l mod (n−1)) + 1 by
    default. Weights ``[D, n, 3]`` (φ, θ, ω), as ``qml.StronglyEntanglingLayers.shape``.

    Args:
        ranges: the r_l of each layer (length D, none a multiple of n), default as PennyLane.
    """

    ranges: Sequence[int] | None = None
    name: str = "strongly-entangling"

    def __post_init__(self) -> None:
        if self.ranges is not None:
            try:
                ranges = tuple(int(r) for r in self.ranges)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"strongly-entangling.ranges must be a list of ints, got {self.ranges!r}"
                ) from None
            object.__setattr__(self, "ranges", ranges)

    def shape(self, layers: int, n_wires: int) -> tuple[int, ...]:
        return (layers, n_wires, 3)

    def layer_ranges(self, layers: int, n_wires: int) -> tuple[int, ...]:
        """r_l for each layer (PennyLane's default, or the ``ranges`` option checked)."""
        if n_wires == 1:
            return (0,) * layers
        if self.ranges is None:
            return tuple((d % (n_wires - 1)) + 1 for d in range(layers))
        if len(self.ranges) != layers or any(r % n_wires == 0 for r in self.ranges):
            raise ConfigError(
                f"strongly-entangling.ranges={list(self.ranges)} must give one range per "
                f"layer ({layers}), none a multiple of n_wires={n_wires}"
            )
        return self.ranges

    def ops(self, layers: int, n_wires: int) -> list[Op]:
        ops: list[Op] = []
        for d, r in enumerate(self.layer_ranges(layers, n_wires)):
            for q in range(n_wires):
                ops += [
                    Op("RZ", (q,), (d, q, 0)), Op("RY", (q,), (d, q, 1)),
                    Op("RZ", (q,), (d, q, 2)),
                ]
            if n_wires > 1:
                ops += [Op("CNOT", (q, (q + r) % n_wires)) for q in range(n_wires)]
        return ops

    def options(self) -> dict:
        return {} if self.ranges is None else {"ranges": list(self.ranges)}


@ANSATZES.register("simplified-two-design")
@dataclass(frozen=True)
class SimplifiedTwoDesign(Ansatz):
    """PennyLane's ``SimplifiedTwoDesign``: RY(initial_layer_weights[q]) on every wire, then
    per layer CZ on the pairs (0,1), (2,3), … each followed by RY on both wires, then the
    same on the pairs (1,2), (3,4), ….

    PennyLane's template takes two tensors, ``initial_layer_weights`` ``[n]`` and
    ``weights`` ``[D, n−1, 2]`` (``qml.SimplifiedTwoDesign.shape(D, n)``). The head holds
    both, trained together, in its one ``weights`` parameter: a flat vector of
    n + 2·D·(n−1) angles, the initial layer first; :meth:`split_weights` returns the two
    PennyLane-shaped views (``head.ansatz.split_weights(head.weights, D, n)``).
    """

    name: str = "simplified-two-design"

    def weight_parts(self, layers: int, n_wires: int) -> dict[str, tuple[int, ...]]:
        return {"initial_layer_weights": (n_wires,), "weights": (layers, n_wires - 1, 2)}

    def shape(self, layers: int, n_wires: int) -> tuple[int, ...]:
        return (n_wires + 2 * layers * (n_wires - 1),)

    def ops(self, layers: int, n_wires: int) -> list[Op]:
        n = n_wires

        def angle(d: int, j: int, k: int) -> tuple[int]:
            return (n + (d * (n - 1) + j) * 2 + k,)

        ops = [Op("RY", (q,), (q,)) for q in range(n)]
        for d in range(layers):
            for first, offset in ((0, 0), (1, n // 2)):
                for i, a in enumerate(range(first, n - 1, 2)):
                    ops += [
                        Op("CZ", (a, a + 1)),
                        Op("RY", (a,), angle(d, offset + i, 0)),
                        Op("RY", (a + 1,), angle(d, offset + i, 1)),
                    ]
        return ops


def build_ansatz(ansatz: str | Ansatz, **options) -> Ansatz:
    """Returns an :class:`Ansatz` from a registry name (with options) or an instance.

    Raises:
        qhead.registry.UnknownNameError: unknown name (lists the registered ones).
        ConfigError: bad options, or a factory that does not return an Ansatz.
    """
    if isinstance(ansatz, Ansatz):
        if options:
            raise ConfigError(f"ansatz options {sorted(options)} given with an Ansatz instance")
        return ansatz
    factory = ANSATZES.get(ansatz)
    try:
        obj = factory(**options)
    except TypeError as error:
        raise ConfigError(f"bad options for ansatz {ansatz!r}: {error}") from None
    if not isinstance(obj, Ansatz):
        raise ConfigError(f"ansatz factory {ansatz!r} returned {type(obj).__name__}, not an Ansatz")
    if not obj.name:
        with contextlib.suppress(AttributeError):  # frozen dataclass without a name field
            obj.name = ansatz
    return obj


def check_ops(ansatz: Ansatz, layers: int, n_wires: int) -> list[Op]:
    """The ansatz's gate list, validated against its weight shape (raises ConfigError)."""
    ops = list(ansatz.ops(layers, n_wires))
    shape = ansatz.shape(layers, n_wires)
    for op in ops:
        if op.name not in GATES:
            raise ConfigError(
                f"ansatz {ansatz.name!r} uses gate {op.name!r}; allowed: {', '.join(GATES)}"
            )
    from qhead.simulator import validate_ops

    try:
        validate_ops(ops, n_wires, shape)
    except ValueError as error:
        raise ConfigError(f"ansatz {ansatz.name!r} produced an invalid circuit: {error}") from None
    return ops
