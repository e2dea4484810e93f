"""Runs an ansatz through PennyLane (any device or hardware plugin).

The circuit is ``AmplitudeEmbedding(x, wires=range(n), pad_with=0., normalize=True)``
followed by the ansatz's gate list and ``expval(PauliZ(w))`` for each measured wire,
in a torch-interface QNode, broadcast over the batch. PennyLane is imported lazily.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from qhead.errors import ConfigError
from qhead.simulator import GATES, Op

__all__ = ["PennyLaneCircuit", "import_pennylane", "parse_backend"]

_DIFF_METHODS = {"default.qubit": "backprop", "lightning.qubit": "adjoint"}


def import_pennylane():
    """Imports PennyLane or raises ConfigError saying how to install it."""
    try:
        import pennylane as qml
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "backend 'pennylane' needs PennyLane: pip install 'qhead[pennylane]' "
            f"(import failed: {error})"
        ) from None
    return qml


def parse_backend(backend: str) -> tuple[str, str | None]:
    """``"torch"`` → ("torch", None); ``"pennylane[:device]"`` → ("pennylane", device)."""
    if backend == "torch":
        return "torch", None
    if backend == "pennylane":
        return "pennylane", "default.qubit"
    if backend.startswith("pennylane:") and len(backend) > len("pennylane:"):
        return "pennylane", backend.split(":", 1)[1]
    raise ConfigError(
        f"backend must be 'torch', 'pennylane' or 'pennylane:<device>' "
        f"(e.g. 'pennylane:lightning.qubit'), got {backend!r}"
    )


class PennyLaneCircuit:
    """A QNode for one circuit: ``__call__(features [B, N], weights) -> [B, m]``.

    Args:
        ops: the gate list.
        n_wires: number of qubits.
        measured_wires: wires whose ⟨Z⟩ are returned, in order.
        device: PennyLane device name.
        shots: ``None`` (exact) or shots per example.
        diff_method: default "backprop" for default.qubit, "adjoint" for
            lightning.qubit, PennyLane's "best" otherwise and with shots.
        seed: device seed for shot sampling (devices that accept one).
    """

    def __init__(
        self,
        ops: Sequence[Op],
        n_wires: int,
        measured_wires: Sequence[int],
        device: str = "default.qubit",
        shots: int | None = None,
        diff_method: str | None = None,
        seed: int | None = None,
    ) -> None:
        qml = import_pennylane()
        self.ops = tuple(ops)
        self.n_wires = n_wires
        self.measured_wires = tuple(measured_wires)
        self.device_name = device
        self.shots = shots
        kwargs = {"wires": n_wires}
        if seed is not None:
            kwargs["seed"] = seed
        try:
            dev = qml.device(device, **kwargs)
        except Exception as error:
            raise ConfigError(f"cannot create PennyLane device {device!r}: {error}") from None
        # Backprop/adjoint need exact expectations; with shots PennyLane picks (parameter shift).
        default = "best" if shots is not None else _DIFF_METHODS.get(device, "best")
        method = diff_method or default
        classes = {name: getattr(qml, spec.pennylane) for name, spec in GATES.items()}

        def apply(op: Op, weights) -> None:
            angle = () if op.param is None else (weights[op.param],)
            classes[op.name](*angle, wires=list(op.wires))

        def circuit(features, weights):
            qml.AmplitudeEmbedding(features, wires=range(n_wires), pad_with=0.0, normalize=True)
            for op in self.ops:
                apply(op, weights)
            return [qml.expval(qml.PauliZ(w)) for w in self.measured_wires]

        self.qnode = qml.QNode(circuit, dev, interface="torch", diff_method=method, shots=shots)

    def __call__(self, features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Features ``[B, N]`` (finite, no all-zero rows) and weights → ``[B, m]``."""
        out = self.qnode(features, weights)
        if isinstance(out, torch.Tensor):
            out = [out] if out.dim() <= 1 else list(out)
        out = torch.stack([torch.as_tensor(o) for o in out], dim=-1)
        if out.dim() == 1:
            out = out[None]
        return out
