"""The AE-VQC layer: amplitude encoding → ansatz → ⟨Z⟩ of m wires, as an ``nn.Module``."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from torch import nn

from qhead.errors import ConfigError
from qhead.quantum.ansatz import Ansatz, build_ansatz, check_ops
from qhead.quantum.lint import CircuitLintWarning, LintWarning, lint_ops
from qhead.quantum.pennylane_backend import PennyLaneCircuit, parse_backend
from qhead.simulator import MAX_QUBITS, check_finite_rows, num_qubits, run_encoded_circuit

__all__ = ["AEVQC", "resolve_measured_wires"]


def resolve_measured_wires(
    measured_wires: int | Sequence[int] | None, n_qubits: int
) -> tuple[int, ...]:
    """None → all n wires; int m → wires 0..m−1; a list → those wires (distinct, in range).

    Raises:
        ConfigError: naming ``measured_wires`` and the allowed range.
    """
    if measured_wires is None:
        return tuple(range(n_qubits))
    if isinstance(measured_wires, bool):
        raise ConfigError(
            f"measured_wires must be None, an int or a list of ints, got {measured_wires!r}"
        )
    if isinstance(measured_wires, int):
        if not 1 <= measured_wires <= n_qubits:
            raise ConfigError(
                f"measured_wires={measured_wires} must be between 1 and n_qubits={n_qubits}"
            )
        return tuple(range(measured_wires))
    try:
        wires = tuple(int(w) for w in measured_wires)
    except (TypeError, ValueError):
        raise ConfigError(
            f"measured_wires must be None, an int or a list of ints, got {measured_wires!r}"
        ) from None
    if not wires or len(set(wires)) != len(wires) or any(not 0 <= w < n_qubits for w in wires):
        raise ConfigError(
            f"measured_wires={list(wires)} must be distinct wires in 0..{n_qubits - 1} "
            f"(n_qubits={n_qubits}), at least one"
        )
    return wires


def _check_shots(shots: int | None) -> int | None:
    if shots is None:
        return None
    if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
        raise ConfigError(f"shots must be None (exact) or a positive integer, got {shots!r}")
    return shots


class AEVQC(nn.Module):
    """Amplitude-encoded variational quantum circuit (the paper's quantum head).

    The flattened input (C-order, zero-padded to 2^n, L2-normalised; see
    :func:`qhead.simulator.amplitude_encode`, including the all-zero-row rule) is
    encoded on n = ceil(log2 in_features) qubits, the ansatz acts on it and the
    layer returns ⟨Z⟩ of the measured wires, values in [−1, 1].

    Args:
        in_features: N, the number of features per example (e.g. 512·7·7 = 25088).
        ansatz: registry name in :data:`qhead.quantum.ANSATZES` or an Ansatz instance.
        layers: D ≥ 1.
        measured_wires: None → all n wires; int m → wires 0..m−1; list → those wires.
        shots: None for exact expectations; an int for finite-shot estimates
            (forward = estimate, backward = exact gradient). Settable later
            (``module.shots = 1000``).
        backend: "torch" (qhead's simulator), "pennylane" (``default.qubit``) or
            "pennylane:<device>" (e.g. "pennylane:lightning.qubit").
        generator: optional ``torch.Generator`` for reproducible shot sampling
            (torch backend); for the PennyLane backend use ``seed``.
        seed: device seed for the PennyLane backend with shots.
        **ansatz_options: passed to the ansatz factory (e.g. ``gate="RX"``,
            ``gates=("RZ", "RY")``, ``entangler="ring"``).

    Attributes:
        n_qubits: n.
        out_features: m, the number of measured wires.
        measured_wires: the measured wires, in output order.
        weights: ``nn.Parameter`` of the ansatz's shape (``[D, n]`` for ansatz1,
            ``[D, 2, n]`` for ansatz2), initialised uniformly in [0, 2π) from the
            global torch RNG.
        lint: the circuit-lint findings (also emitted once as
            :class:`~qhead.quantum.CircuitLintWarning` at construction).

    Shapes:
        input ``[B, in_features]`` or ``[B, C, H, W]`` with C·H·W = in_features;
        output ``[B, m]`` (float32, or float64 when input or weights are float64).
        Autocast is disabled inside the layer: half-precision inputs are computed in
        float32.
    """

    def __init__(
        self,
        in_features: int,
        ansatz: str | Ansatz = "ansatz1",
        layers: int = 1,
        measured_wires: int | Sequence[int] | None = None,
        shots: int | None = None,
        backend: str = "torch",
        generator: torch.Generator | None = None,
        seed: int | None = None,
        **ansatz_options,
    ) -> None:
        super().__init__()
        if isinstance(in_features, bool) or not isinstance(in_features, int) or in_features < 1:
            raise ConfigError(f"in_features must be a positive integer, got {in_features!r}")
        if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
            raise ConfigError(f"layers must be an integer ≥ 1, got {layers!r}")
        n = num_qubits(in_features)
        if n > MAX_QUBITS:
            raise ConfigError(
                f"in_features={in_features} needs {n} qubits: a state of 2^{n} amplitudes per "
                f"example exceeds the simulator limit of {MAX_QUBITS} qubits "
                f"(in_features ≤ {2**MAX_QUBITS}); pool or project the features first"
            )
        self.in_features = in_features
        self.n_qubits = n
        self.layers = layers
        self.ansatz = build_ansatz(ansatz, **ansatz_options)
        self.measured_wires = resolve_measured_wires(measured_wires, n)
        self.out_features = len(self.measured_wires)
        self._ops = tuple(check_ops(self.ansatz, layers, n))
        shape = tuple(self.ansatz.shape(layers, n))
        self.weights = nn.Parameter(torch.rand(shape) * (2 * math.pi))
        self.generator = generator
        self.seed = seed
        self._shots = _check_shots(shots)
        self._pl: PennyLaneCircuit | None = None
        self.backend = backend
        self.lint: list[LintWarning] = lint_ops(self._ops, n, self.measured_wires)
        for finding in self.lint:
            warnings.warn(
                f"AEVQC({self.ansatz.name}, D={layers}, n={n}, m={self.out_features}): {finding}",
                CircuitLintWarning,
                stacklevel=2,
            )

    def _build_pennylane(self) -> PennyLaneCircuit:
        return PennyLaneCircuit(
            self._ops, self.n_qubits, self.measured_wires, self.device_name or "default.qubit",
            shots=self._shots, seed=self.seed,
        )

    @property
    def backend(self) -> str:
        """``"torch"``, ``"pennylane"`` or ``"pennylane:<device>"``; settable at run time.

        Setting it keeps the weights and switches where the circuit runs, e.g.
        ``head.backend = "pennylane:default.qubit"`` on a trained head.

        Raises:
            ConfigError: a malformed string, PennyLane missing, or an unknown device.
        """
        return self._backend

    @backend.setter
    def backend(self, value: str) -> None:
        if not isinstance(value, str):
            raise ConfigError(
                f"backend must be 'torch', 'pennylane' or 'pennylane:<device>', got {value!r}"
            )
        name, device = parse_backend(value)
        pl = None
        if name == "pennylane":
            pl = PennyLaneCircuit(
                self._ops, self.n_qubits, self.measured_wires, device or "default.qubit",
                shots=self._shots, seed=self.seed,
            )
        self.backend_name, self.device_name, self._backend, self._pl = name, device, value, pl

    @property
    def shots(self) -> int | None:
        """Shots per example (None = exact). Setting it switches mode at run time."""
        return self._shots

    @shots.setter
    def shots(self, value: int | None) -> None:
        self._shots = _check_shots(value)
        if self._pl is not None and self._pl.shots != self._shots:
            self._pl = self._build_pennylane()

    @property
    def ops(self) -> tuple:
        """The circuit's gate list (:class:`qhead.simulator.Op`)."""
        return self._ops

    def config(self) -> dict:
        """Constructor arguments as builtin types (rebuild with ``AEVQC(**config)``)."""
        return {
            "in_features": self.in_features,
            "ansatz": self.ansatz.name,
            "layers": self.layers,
            "measured_wires": list(self.measured_wires),
            "shots": self._shots,
            "backend": self.backend,
            **self.ansatz.options(),
        }

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, n_qubits={self.n_qubits}, "
            f"ansatz={self.ansatz.name!r}, layers={self.layers}, "
            f"out_features={self.out_features}, shots={self._shots}, backend={self.backend!r}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, in_features]`` or ``[B, C, H, W]`` → ``[B, m]`` expectations in [−1, 1]."""
        if x.dim() < 2 or x[0].numel() != self.in_features:
            raise ValueError(
                f"AEVQC expects [B, {self.in_features}] or [B, C, H, W] with C·H·W = "
                f"{self.in_features}, got shape {tuple(x.shape)}"
            )
        dtype = torch.promote_types(x.dtype, self.weights.dtype)
        if dtype not in (torch.float32, torch.float64):
            dtype = torch.float32
        with torch.autocast(device_type=x.device.type, enabled=False):
            flat = x.reshape(x.shape[0], -1).to(dtype)
            weights = self.weights.to(dtype)
            if self._pl is None:
                return run_encoded_circuit(
                    flat, self.n_qubits, self._ops, weights, self.measured_wires,
                    shots=self._shots, generator=self.generator,
                )
            return self._forward_pennylane(flat, weights)

    def _forward_pennylane(self, flat: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        check_finite_rows(flat)
        # PennyLane cannot normalise a zero vector; give it |0…0⟩ as the torch backend does.
        zero = (flat == 0).all(dim=1, keepdim=True)
        basis0 = torch.zeros_like(flat[:1])
        basis0[:, 0] = 1
        flat = torch.where(zero, basis0, flat)
        out = self._pl(flat, weights)
        return out.to(device=flat.device, dtype=flat.dtype)
