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
(as RZ·RY·RZ); templates and other operations are first decomposed by PennyLane into
those where it can. It returns ``expval(PauliZ(w))`` of single wires, exactly (no
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

from dataclasses import replace

import pennylane as qml
import torch
from pennylane.devices import Device, ExecutionConfig
from pennylane.devices.preprocess import decompose, validate_device_wires
from pennylane.exceptions import DeviceError
from pennylane.measurements import ExpectationMP
from pennylane.transforms.core import CompilePipeline, transform

from qhead.simulator import GATES, MAX_QUBITS, SIMULATOR_NAMES, Op, run_encoded_circuit

__all__ = ["QheadQubit"]

# PennyLane class name → qhead gate name (the gate table says which class each gate is).
_NATIVE = {spec.pennylane: name for name, spec in GATES.items()}
_PREPS = ("StatePrep", "AmplitudeEmbedding")
_SUPPORTED = frozenset({*_NATIVE, "Rot", "GlobalPhase", "Identity", *_PREPS})


def _stopping_condition(op) -> bool:
    return op.name in _SUPPORTED


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
        ops, angles = [], []
        for op in operations:
            if op.name in _PREPS:
                raise DeviceError(
                    f"qhead.qubit accepts a state preparation only as the first operation, "
                    f"got {op.name} later in the circuit"
                )
            if op.name in ("GlobalPhase", "Identity"):
                continue  # no effect on expectation values
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
                    param = (len(angles),)
                    angles.append(angle)
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


def _stack_angles(angles, dtype: torch.dtype) -> torch.Tensor:
    if not angles:
        return torch.zeros(1, dtype=dtype)
    return torch.stack([torch.as_tensor(a).to(dtype).reshape(()) for a in angles])
