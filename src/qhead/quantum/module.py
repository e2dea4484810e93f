"""The AE-VQC layer: amplitude encoding → ansatz → ⟨Z⟩ of m wires, as an ``nn.Module``."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from torch import nn

from qhead.errors import ConfigError
from qhead.quantum.ansatz import Ansatz, check_ops
from qhead.quantum.lint import CircuitLintWarning, LintWarning, lint_ops
from qhead.quantum.options import (
    CircuitOptions,
    check_backend,
    check_register,
    check_shots,
    resolve_measured_wires,
    wires_in_range,
)
from qhead.quantum.pennylane_backend import PennyLaneCircuit
from qhead.simulator import SIMULATOR_NAMES, check_finite_rows, num_qubits, run_encoded_circuit

__all__ = ["AEVQC", "resolve_measured_wires"]


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
        options: already checked :class:`~qhead.quantum.CircuitOptions`, instead of
            ``ansatz``/``layers``/``measured_wires``/``shots``/``backend``/ansatz options
            (leave those at their defaults). The caller vouches for ``in_features`` too:
            the quantum head checks the register size against the feature-map shape.
            This is how a config-built head avoids checking every rule twice.
        simulator: which of qhead's implementations runs the torch backend: "auto"
            (default: the compiled CPU kernels for exact float32/float64 CPU calls, the
            torch plan otherwise; see :mod:`qhead.simulator.backends`), "cpu-kernels",
            "torch-plan" or "torch" (the gate-by-gate reference). A forced one that
            cannot run a call (e.g. "cpu-kernels" on CUDA or with shots) raises
            ``ConfigError`` saying why. Settable later (``head.simulator = "torch"``).
        **ansatz_options: passed to the ansatz factory (e.g. ``gate="RX"``,
            ``gates=("RZ", "RY")``, ``entangler="ring"``).

    Raises:
        ConfigError: a bad argument (one message per rule, see
            :mod:`qhead.quantum.options`), or a map needing more than
            :data:`qhead.simulator.MAX_QUBITS` qubits.

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
        *,
        options: CircuitOptions | None = None,
        simulator: str = "auto",
        **ansatz_options,
    ) -> None:
        super().__init__()
        if options is None:
            options = CircuitOptions(ansatz, layers, measured_wires, shots, backend, ansatz_options)
            n = check_register(in_features)
        else:
            given = (ansatz, layers, measured_wires, shots, backend, ansatz_options)
            if given != ("ansatz1", 1, None, None, "torch", {}):
                raise ConfigError(
                    "AEVQC: give the circuit either as options=CircuitOptions(...) or as "
                    "ansatz/layers/measured_wires/shots/backend arguments, not both"
                )
            n = num_qubits(in_features)
        self.in_features = in_features
        self.n_qubits = n
        self.layers = options.layers
        self.ansatz = options.ansatz
        self.measured_wires = wires_in_range(
            options.measured_wires, n, f"{options.where}measured_wires"
        )
        self.out_features = len(self.measured_wires)
        self._ops = tuple(check_ops(self.ansatz, self.layers, n))
        shape = tuple(self.ansatz.shape(self.layers, n))
        self.weights = nn.Parameter(torch.rand(shape) * (2 * math.pi))
        self.generator = generator
        self.seed = seed
        self._shots = options.shots
        self._pl: PennyLaneCircuit | None = None
        self._use_backend(options.backend, options.backend_parts)
        self.simulator = simulator
        self.lint: list[LintWarning] = lint_ops(self._ops, n, self.measured_wires)
        for finding in self.lint:
            warnings.warn(
                f"AEVQC({self.ansatz.name}, D={self.layers}, n={n}, m={self.out_features}): "
                f"{finding}",
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
        self._use_backend(value, check_backend(value))

    def _use_backend(self, value: str, parts: tuple[str, str | None]) -> None:
        """Switches to the checked backend ``value`` (``parts``: its name and device)."""
        name, device = parts
        pl = None
        if name == "pennylane":
            pl = PennyLaneCircuit(
                self._ops, self.n_qubits, self.measured_wires, device or "default.qubit",
                shots=self._shots, seed=self.seed,
            )
        self.backend_name, self.device_name, self._backend, self._pl = name, device, value, pl

    @property
    def simulator(self) -> str:
        """The simulator implementation used by the torch backend (see the class docs)."""
        return self._simulator

    @simulator.setter
    def simulator(self, value: str) -> None:
        if value not in SIMULATOR_NAMES:
            raise ConfigError(
                f"simulator must be one of {', '.join(SIMULATOR_NAMES)}, got {value!r}"
            )
        self._simulator = value

    @property
    def shots(self) -> int | None:
        """Shots per example (None = exact). Setting it switches mode at run time."""
        return self._shots

    @shots.setter
    def shots(self, value: int | None) -> None:
        self._shots = check_shots(value)
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
            **({} if self._simulator == "auto" else {"simulator": self._simulator}),
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
                    shots=self._shots, generator=self.generator, simulator=self._simulator,
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
