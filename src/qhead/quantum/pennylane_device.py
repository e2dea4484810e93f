"""qhead's simulator as a PennyLane device: ``qml.device("qhead.qubit", wires=n)``.

A PennyLane user gets qhead's speed by changing the device string of existing code,
e.g. a ``qml.qnn.TorchLayer``::

    dev = qml.device("qhead.qubit", wires=15)

    @qml.qnode(dev, interface="torch")          # diff_method "best" = backprop
    def circuit(inputs, weights):
        qml.AmplitudeEmbedding(inputs, wires=range(15), pad_with=0.0, normalize=True)
        qml.StronglyEntanglingLayers(weights, wires=range(15))
        return [qml.expval(qml.PauliZ(w)) for w in range(15)]

    layer = qml.qnn.TorchLayer(circuit, {"weights": (3, 15, 3)})

What it executes: an optional state preparation on all wires first (``StatePrep`` or
``AmplitudeEmbedding``, batched or not; without one the circuit starts in |0…0⟩), then
gates of qhead's gate table (Hadamard, PauliX, PauliZ, RX, RY, RZ, CNOT, CZ) and ``Rot``
(as RZ·RY·RZ). ``StronglyEntanglingLayers`` (CNOT entangler), ``BasicEntanglerLayers``
(RX, RY or RZ) and ``SimplifiedTwoDesign`` run whole, as qhead's ansätze of the same
names and weight shapes, on any wires of the device; their other variants, other
templates and other operations are first decomposed by PennyLane into the gates above
where it can. It returns ``expval(PauliZ(w))`` of single wires, exactly (no
shots). Anything else — another measurement, a gate with no decomposition into that
set, a complex state vector, batched gate angles, shots — raises
``pennylane.exceptions.DeviceError`` naming it.

Gradients are by backprop with the torch interface: the device runs qhead's simulator
on the tape's torch tensors (:func:`qhead.simulator.run_encoded_circuit`, the compiled
CPU kernels with their adjoint backward where they apply), so autograd gives gradients
for every gate angle and for the embedded features. The state handed over by
``StatePrep`` is normalised again by qhead (a no-op on its value); the gradient with
respect to the raw features of ``AmplitudeEmbedding(normalize=True)`` is therefore
exactly default.qubit's, while the gradient with respect to a given normalised state
vector is its projection orthogonal to that state (the only part that changes a
normalised state).

Registered through the ``pennylane.plugins`` entry point of the ``qhead`` package
(install with the ``pennylane`` extra).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pennylane as qml
import torch
from pennylane.devices import Device, ExecutionConfig
from pennylane.devices.preprocess import decompose, validate_device_wires
from pennylane.exceptions import DeviceError
from pennylane.measurements import ExpectationMP
from pennylane.transforms.core import CompilePipeline, transform

from qhead.quantum.ansatz import (
    Ansatz,
    BasicEntanglerLayers,
    SimplifiedTwoDesign,
    StronglyEntanglingLayers,
)
from qhead.simulator import GATES, MAX_QUBITS, SIMULATOR_NAMES, Op, run_encoded_circuit

__all__ = ["QheadQubit"]

# PennyLane class name → qhead gate name (the gate table says which class each gate is).
_NATIVE = {spec.pennylane: name for name, spec in GATES.items()}
_PREPS = ("StatePrep", "AmplitudeEmbedding")
_SUPPORTED = frozenset({*_NATIVE, "Rot", "GlobalPhase", "Identity", *_PREPS})
# Templates run whole when :func:`_native_template` maps them.
_TEMPLATES = frozenset({"StronglyEntanglingLayers", "BasicEntanglerLayers", "SimplifiedTwoDesign"})


def _native_template(op) -> tuple[Ansatz, int, list] | None:
    """``(ansatz, layers, weight tensors in the ansatz's flat order)`` for a PennyLane
    template that qhead runs whole, as its registered ansatz of the same name and weight
    shapes (checked against PennyLane's own templates in the tests), or None: then
    PennyLane decomposes it into gates first.

    Running the template whole skips PennyLane's decomposition of every gate (≈ 6 ms per
    call at 15 wires and 3 layers) and hands qhead the weight tensor itself instead of
    one indexed scalar per gate (a select node each, forward and backward). Variants
    the ansätze do not have (another entangler than CNOT, another rotation than RX, RY,
    RZ, broadcast weights, fewer than two wires) are decomposed as before.
    """
    if len(op.wires) < 2:
        return None
    shapes = [qml.math.shape(d) for d in op.data]
    if op.name == "StronglyEntanglingLayers":
        ranges = tuple(int(r) for r in op.hyperparameters["ranges"])
        if (op.hyperparameters.get("imprimitive") is not qml.CNOT or len(shapes[0]) != 3
                or any(r % len(op.wires) == 0 for r in ranges)):
            return None
        ansatz = StronglyEntanglingLayers(ranges=ranges)
        return ansatz, shapes[0][0], list(op.data)
    if op.name == "BasicEntanglerLayers":
        rotation = getattr(op.hyperparameters.get("rotation"), "__name__", None)
        if rotation not in ("RX", "RY", "RZ") or len(shapes[0]) != 2:
            return None
        return BasicEntanglerLayers(rotation=rotation), shapes[0][0], list(op.data)
    if op.name == "SimplifiedTwoDesign":
        if [len(shape) for shape in shapes] != [1, 3]:
            return None
        return SimplifiedTwoDesign(), shapes[1][0], list(op.data)
    return None


def _stopping_condition(op) -> bool:
    return op.name in _SUPPORTED or (op.name in _TEMPLATES and _native_template(op) is not None)


@transform
def _validate_measurements(tape):
    for m in tape.measurements:
        obs = getattr(m, "obs", None)
        if not (isinstance(m, ExpectationMP) and obs is not None and obs.name == "PauliZ"):
            raise DeviceError(
                f"qhead.qubit measures expval(PauliZ(wire)) only, got {m}; "
                "use default.qubit for other measurements"
            )
    if tape.shots:
        raise DeviceError(
            f"qhead.qubit computes exact expectations only, got shots={tape.shots.total_shots}"
        )
    return (tape,), lambda results: results[0]


class QheadQubit(Device):
    """PennyLane device running qhead's state-vector simulator (see the module docs).

    Args:
        wires: number of wires or their labels.
        shots: must be None (exact expectations).
        simulator: qhead's implementation, as for ``AEVQC(simulator=...)``: "auto"
            (default), "cpu-kernels", "torch-plan" or "torch".
    """

    name = "qhead.qubit"

    def __init__(self, wires=None, shots=None, simulator: str = "auto"):
        if shots is not None:
            raise DeviceError(f"qhead.qubit computes exact expectations only, got shots={shots}")
        if simulator not in SIMULATOR_NAMES:
            raise DeviceError(
                f"simulator must be one of {', '.join(SIMULATOR_NAMES)}, got {simulator!r}"
            )
        super().__init__(wires=wires, shots=None)
        self.simulator = simulator

    def supports_derivatives(self, execution_config=None, circuit=None) -> bool:
        if execution_config is None:
            return True
        return execution_config.gradient_method in ("backprop", "best")

    def setup_execution_config(
        self, config: ExecutionConfig | None = None, circuit=None
    ) -> ExecutionConfig:
        config = config or ExecutionConfig()
        method = config.gradient_method
        if method == "best":
            method = "backprop"
        updates = {"gradient_method": method, "convert_to_numpy": method != "backprop"}
        if config.use_device_gradient is None:
            updates["use_device_gradient"] = method == "backprop"
        if config.use_device_jacobian_product is None:
            updates["use_device_jacobian_product"] = False
        if config.grad_on_execution is None:
            updates["grad_on_execution"] = False
        return replace(config, **updates)

    def preprocess_transforms(self, execution_config: ExecutionConfig | None = None):
        pipeline = CompilePipeline()
        pipeline.add_transform(validate_device_wires, self.wires, name=self.name)
        pipeline.add_transform(
            decompose, stopping_condition=_stopping_condition, name=self.name,
            skip_initial_state_prep=True,
        )
        pipeline.add_transform(_validate_measurements)
        return pipeline

    def execute(self, circuits, execution_config: ExecutionConfig | None = None):
        if isinstance(circuits, qml.tape.QuantumScript):
            return self._run(circuits)
        return tuple(self._run(tape) for tape in circuits)

    # ------------------------------------------------------------------ internals
    def _run(self, tape):
        wires = self.wires if self.wires is not None else tape.wires
        n = len(wires)
        if n > MAX_QUBITS:
            raise DeviceError(f"qhead.qubit simulates at most {MAX_QUBITS} wires, got {n}")
        index = {w: i for i, w in enumerate(wires)}
        operations = list(tape.operations)
        state = None
        if operations and operations[0].name in _PREPS:
            state = self._initial_state(operations.pop(0), wires)
        ops: list[Op] = []
        angles: list = []  # scalars and flat template weights, concatenated in order
        count = 0  # angles so far
        for op in operations:
            if op.name in _PREPS:
                raise DeviceError(
                    f"qhead.qubit accepts a state preparation only as the first operation, "
                    f"got {op.name} later in the circuit"
                )
            if op.name in ("GlobalPhase", "Identity"):
                continue  # no effect on expectation values
            template = _native_template(op) if op.name in _TEMPLATES else None
            if template is not None:
                ansatz, layers, tensors = template
                local = [index[w] for w in op.wires]
                shape = ansatz.shape(layers, len(local))
                for gate in ansatz.ops(layers, len(local)):
                    param = None
                    if gate.param is not None:
                        param = (count + int(np.ravel_multi_index(gate.param, shape)),)
                    ops.append(Op(gate.name, tuple(local[q] for q in gate.wires), param))
                angles += [_flat(t) for t in tensors]
                count += math.prod(shape)
                continue
            names = ("RZ", "RY", "RZ") if op.name == "Rot" else (_NATIVE.get(op.name),)
            if names[0] is None:  # pragma: no cover - decompose() refuses these first
                raise DeviceError(f"qhead.qubit does not support the operation {op.name}")
            for name, angle in zip(names, op.data or [None] * len(names), strict=True):
                param = None
                if angle is not None:
                    if qml.math.ndim(angle) != 0:
                        raise DeviceError(
                            f"qhead.qubit needs one angle per gate for the whole batch; "
                            f"{op.name} on wires {list(op.wires)} has batched angles"
                        )
                    param = (count,)
                    angles.append(angle)
                    count += 1
                ops.append(Op(name, tuple(index[w] for w in op.wires), param))
        features, batched = self._features(state, n, angles)
        weights = _stack_angles(angles, features.dtype)
        measured = tuple(index[m.obs.wires[0]] for m in tape.measurements)
        out = run_encoded_circuit(
            features, n, ops, weights, measured, simulator=self.simulator
        )
        results = tuple(out[:, k] if batched else out[0, k] for k in range(len(measured)))
        return results[0] if len(results) == 1 else results

    @staticmethod
    def _initial_state(prep, wires):
        if list(prep.wires) != list(wires):
            raise DeviceError(
                f"qhead.qubit needs {prep.name} on all device wires {list(wires)} in order, "
                f"got wires {list(prep.wires)}"
            )
        state = prep.data[0]
        if qml.math.iscomplex(state).any() if not isinstance(state, torch.Tensor) else (
            state.is_complex() and bool((state.imag != 0).any())
        ):
            raise DeviceError(
                f"qhead.qubit simulates real amplitude-encoded states; {prep.name} got a "
                "complex state vector"
            )
        if isinstance(state, torch.Tensor):
            return state.real if state.is_complex() else state
        return torch.as_tensor(qml.math.real(qml.math.unwrap(state)))

    @staticmethod
    def _features(state, n: int, angles) -> tuple[torch.Tensor, bool]:
        dtype = torch.float32
        for a in [*angles, state]:
            if isinstance(a, torch.Tensor) and a.dtype == torch.float64:
                dtype = torch.float64
            elif a is not None and not isinstance(a, torch.Tensor):
                dtype = torch.float64  # numpy / Python numbers are float64
        if state is None:  # no state preparation: |0…0⟩
            basis = torch.zeros(1, 2**n, dtype=dtype)
            basis[0, 0] = 1
            return basis, False
        batched = state.dim() == 2
        return state.reshape(-1, 2**n).to(dtype), batched


def _flat(tensor):
    return tensor.reshape(-1) if isinstance(tensor, torch.Tensor) else np.ravel(tensor)


def _stack_angles(angles, dtype: torch.dtype) -> torch.Tensor:
    """The flat weight vector: scalar angles and flattened template weights, in order."""
    if not angles:
        return torch.zeros(1, dtype=dtype)
    return torch.cat([torch.as_tensor(a).to(dtype).reshape(-1) for a in angles])
