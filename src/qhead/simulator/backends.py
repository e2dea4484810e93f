"""One interface over the simulator's implementations, and the rule that picks one.

Each implementation is one module with the same entry point,
``run(plan, features, weights, shots, generator) -> [B, m] | None`` (``None``: it
declined this batch), plus a check ``unusable(features, n, shots) -> reason | None``:

================ ========================================= ==============================
name             module                                    runs
================ ========================================= ==============================
``torch``        :mod:`qhead.simulator.reference`          every gate in turn (reference)
``torch-plan``   :mod:`qhead.simulator.torch_plan`         the compiled plan, torch ops,
                                                           CPU and CUDA, exact or shots
``cpu-kernels``  :mod:`qhead.simulator.cpu_kernels`        the plan in numba kernels,
                                                           encoding fused, adjoint backward
================ ========================================= ==============================

The rule (:func:`choose`, the only place that decides): ``"auto"`` takes
``cpu-kernels`` when the call is on the CPU, float32 or float64, exact (no shots)
and the kernels are enabled (numba installed, ``QHEAD_CPU_KERNELS`` not 0), and
``torch-plan`` otherwise (CUDA, shots, half precision). The circuit's
shape does not matter: the kernels run any circuit of the gate table. A batch the
kernels decline (a row with NaN/inf, or a norm outside [1e−30, 1e30]) runs on
``torch-plan``. Forcing a name (``AEVQC(simulator=...)``, ``run_encoded_circuit(...,
simulator=...)``) runs that implementation or raises ``ValueError`` saying why it
cannot run the call. Adding an implementation = one module + one entry in
:data:`SIMULATORS` + one line in :func:`choose`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from qhead.errors import ConfigError
from qhead.simulator import cpu_kernels, kernels, torch_plan
from qhead.simulator.encoding import amplitude_encode
from qhead.simulator.plan import Plan
from qhead.simulator.reference import run_reference

__all__ = ["SIMULATORS", "SIMULATOR_NAMES", "Simulator", "choose"]


@dataclass(frozen=True)
class Simulator:
    """One implementation: ``run`` and the check of whether it can run a call."""

    name: str
    run: Callable[..., torch.Tensor | None]
    unusable: Callable[[torch.Tensor, int, int | None], str | None]


def _run_reference(plan: Plan, features, weights, shots, generator):
    state = amplitude_encode(features, plan.n)
    return run_reference(state, plan.ops, weights, plan.wires, shots, generator)


def _run_torch_plan(plan: Plan, features, weights, shots, generator):
    state = amplitude_encode(features, plan.n)
    return torch_plan.run_plan(plan, state, weights, shots, generator)


def _run_kernels(plan: Plan, features, weights, shots, generator):
    return cpu_kernels.run_features(plan, features, weights)


def _kernels_unusable(features: torch.Tensor, n: int, shots: int | None) -> str | None:
    if not kernels.available():
        return "numba is not installed"
    if not kernels.enabled():
        return "the kernels are switched off (QHEAD_CPU_KERNELS=0 or kernels.set_enabled)"
    if shots is not None:
        return "they compute exact expectations only (shots is set)"
    if features.device.type != "cpu":
        return f"they run on the CPU, the input is on {features.device}"
    if features.dtype not in (torch.float32, torch.float64):
        return f"they need float32 or float64, the input is {features.dtype}"
    if not cpu_kernels.usable(features, n, shots):
        return f"input of shape {tuple(features.shape)} does not fit {n} qubits"
    return None


def _always(features, n, shots) -> None:
    return None


#: The implementations by name.
SIMULATORS: dict[str, Simulator] = {
    "torch": Simulator("torch", _run_reference, _always),
    "torch-plan": Simulator("torch-plan", _run_torch_plan, _always),
    "cpu-kernels": Simulator("cpu-kernels", _run_kernels, _kernels_unusable),
}

#: What ``simulator=`` accepts.
SIMULATOR_NAMES = ("auto", *SIMULATORS)


def choose(simulator: str, features: torch.Tensor, n: int, shots: int | None) -> Simulator:
    """The implementation that runs this call (see the module docstring for the rule).

    Raises:
        ConfigError: (a ``ValueError``) unknown name, or a forced implementation that
            cannot run the call.
    """
    if simulator == "auto":
        if _kernels_unusable(features, n, shots) is None:
            return SIMULATORS["cpu-kernels"]
        return SIMULATORS["torch-plan"]
    chosen = SIMULATORS.get(simulator)
    if chosen is None:
        raise ConfigError(
            f"simulator must be one of {', '.join(SIMULATOR_NAMES)}, got {simulator!r}"
        )
    reason = chosen.unusable(features, n, shots)
    if reason is not None:
        raise ConfigError(f"simulator {simulator!r} cannot run this call: {reason}")
    return chosen
