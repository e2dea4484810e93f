"""One-qubit gates and CNOT applied to batched state vectors.

A state is a tensor ``[B] + [2] * n`` (wire 0 = most significant bit of the basis
index), real or complex. Gates are pure functions returning a new state; they
differentiate with autograd with respect to the state and the angles.

Real fast path: H, RY, X, Z and CNOT have real matrices, so a real state stays real
(half the memory and arithmetic of complex); RX and RZ promote the state to complex
(complex64 for float32, complex128 for float64).

Angles are a Python float, a 0-d tensor (shared by the batch) or a ``[B]`` tensor (one
per example). Matrices are ``[2, 2]`` (shared) or ``[B, 2, 2]`` (per example).
Rotation conventions follow PennyLane: ``R_P(θ) = exp(-iθP/2)``.
"""

from __future__ import annotations

import functools
import math

import torch

__all__ = [
    "apply_matrix",
    "apply_permutation",
    "cnot",
    "cnot_permutation",
    "complex_dtype",
    "cz",
    "hadamard",
    "hadamard_matrix",
    "rotation_matrix",
    "rx",
    "rx_matrix",
    "ry",
    "ry_matrix",
    "rz",
    "rz_matrix",
]


def complex_dtype(dtype: torch.dtype) -> torch.dtype:
    """Complex dtype matching a real or complex one: float64 → complex128, else complex64."""
    if dtype in (torch.float64, torch.complex128):
        return torch.complex128
    return torch.complex64


def _n_wires(state: torch.Tensor) -> int:
    n = state.dim() - 1
    if n < 1 or any(s != 2 for s in state.shape[1:]):
        raise ValueError(f"expected a state of shape [B] + [2] * n, got {tuple(state.shape)}")
    return n


def _check_wire(wire: int, n: int, what: str = "wire") -> None:
    if not 0 <= wire < n:
        raise ValueError(f"{what} {wire} out of range for {n} qubits (allowed 0..{n - 1})")


def _angle(theta: float | torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    real = state.real.dtype if state.is_complex() else state.dtype
    if isinstance(theta, torch.Tensor):
        dtype = theta.dtype if theta.is_floating_point() else real
        return theta.to(device=state.device, dtype=dtype)
    return torch.tensor(float(theta), dtype=real, device=state.device)


def _as_complex(re: torch.Tensor, im: torch.Tensor) -> torch.Tensor:
    return torch.complex(re, im)


def ry_matrix(theta: torch.Tensor) -> torch.Tensor:
    """RY(θ) = [[cos θ/2, −sin θ/2], [sin θ/2, cos θ/2]]: θ ``[*]`` → ``[*, 2, 2]`` (real)."""
    c, s = torch.cos(theta / 2), torch.sin(theta / 2)
    return torch.stack((torch.stack((c, -s), -1), torch.stack((s, c), -1)), -2)


def rx_matrix(theta: torch.Tensor) -> torch.Tensor:
    """RX(θ) = [[cos θ/2, −i sin θ/2], [−i sin θ/2, cos θ/2]] → ``[*, 2, 2]`` complex."""
    c, s = torch.cos(theta / 2), torch.sin(theta / 2)
    z = torch.zeros_like(c)
    re = torch.stack((torch.stack((c, z), -1), torch.stack((z, c), -1)), -2)
    im = torch.stack((torch.stack((z, -s), -1), torch.stack((-s, z), -1)), -2)
    return _as_complex(re, im)


def rz_matrix(theta: torch.Tensor) -> torch.Tensor:
    """RZ(θ) = diag(e^{−iθ/2}, e^{iθ/2}) → ``[*, 2, 2]`` complex."""
    c, s = torch.cos(theta / 2), torch.sin(theta / 2)
    z = torch.zeros_like(c)
    re = torch.stack((torch.stack((c, z), -1), torch.stack((z, c), -1)), -2)
    im = torch.stack((torch.stack((-s, z), -1), torch.stack((z, s), -1)), -2)
    return _as_complex(re, im)


def hadamard_matrix(dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
    """H = [[1, 1], [1, −1]] / √2 as a real ``[2, 2]`` tensor."""
    r = 1 / math.sqrt(2)
    return torch.tensor([[r, r], [r, -r]], dtype=dtype, device=device)


_ROTATIONS = {"RX": rx_matrix, "RY": ry_matrix, "RZ": rz_matrix}


def rotation_matrix(name: str, theta: torch.Tensor) -> torch.Tensor:
    """Matrix of the rotation ``name`` ∈ {RX, RY, RZ} for angles ``[*]`` → ``[*, 2, 2]``."""
    try:
        return _ROTATIONS[name](theta)
    except KeyError:
        raise ValueError(f"unknown rotation {name!r}; allowed: RX, RY, RZ") from None


def apply_matrix(state: torch.Tensor, matrix: torch.Tensor, wire: int) -> torch.Tensor:
    """Applies a one-qubit matrix to ``wire`` of every state in the batch.

    Args:
        state: ``[B] + [2] * n``, real or complex.
        matrix: ``[2, 2]`` shared or ``[B, 2, 2]`` per example, real or complex (a
            complex matrix makes the result complex).
        wire: target wire, 0 = most significant bit.

    Returns:
        The new state, same shape.
    """
    n = _n_wires(state)
    _check_wire(wire, n)
    if matrix.shape[-2:] != (2, 2) or matrix.dim() not in (2, 3):
        raise ValueError(f"expected a [2, 2] or [B, 2, 2] matrix, got {tuple(matrix.shape)}")
    batch = state.shape[0]
    view = state.reshape(batch, 2**wire, 2, 2 ** (n - wire - 1))
    s0, s1 = view.unbind(2)  # unbind's backward is one stack, not two zero-filled copies
    m = matrix if matrix.dim() == 2 else matrix[:, None, None]
    new0 = m[..., 0, 0] * s0 + m[..., 0, 1] * s1
    new1 = m[..., 1, 0] * s0 + m[..., 1, 1] * s1
    return torch.stack((new0, new1), dim=2).reshape(state.shape)


def ry(state: torch.Tensor, theta: float | torch.Tensor, wire: int) -> torch.Tensor:
    """RY(θ) on ``wire``; keeps a real state real. θ: float, 0-d or ``[B]``."""
    return apply_matrix(state, ry_matrix(_angle(theta, state)), wire)


def rx(state: torch.Tensor, theta: float | torch.Tensor, wire: int) -> torch.Tensor:
    """RX(θ) on ``wire``; the result is complex. θ: float, 0-d or ``[B]``."""
    return apply_matrix(state, rx_matrix(_angle(theta, state)), wire)


def rz(state: torch.Tensor, theta: float | torch.Tensor, wire: int) -> torch.Tensor:
    """RZ(θ) on ``wire`` (a phase per basis state); the result is complex."""
    n = _n_wires(state)
    _check_wire(wire, n)
    theta = _angle(theta, state)
    phase = torch.polar(torch.ones_like(theta), theta / 2)  # e^{iθ/2}
    if theta.dim() == 1:
        phase = phase[:, None, None]
    batch = state.shape[0]
    view = state.reshape(batch, 2**wire, 2, 2 ** (n - wire - 1))
    s0, s1 = view.unbind(2)
    out = torch.stack((s0 * phase.conj(), s1 * phase), dim=2)
    return out.reshape(state.shape)


def hadamard(state: torch.Tensor, wire: int) -> torch.Tensor:
    """Hadamard on ``wire``; keeps a real state real."""
    real = state.real.dtype if state.is_complex() else state.dtype
    return apply_matrix(state, hadamard_matrix(real, state.device), wire)


@functools.lru_cache(maxsize=64)
def _cnot_permutation_cpu(n: int, pairs: tuple[tuple[int, int], ...]) -> torch.Tensor:
    index = torch.arange(2**n)
    for control, target in pairs:
        _check_wire(control, n, "control")
        _check_wire(target, n, "target")
        if control == target:
            raise ValueError(f"CNOT control and target must differ, got {control}")
        cbit = 1 << (n - 1 - control)
        tbit = 1 << (n - 1 - target)
        gate = torch.arange(2**n)
        gate = torch.where(gate & cbit != 0, gate ^ tbit, gate)
        # Applying gate after the current permutation composes the gathers.
        index = index[gate]
    return index


def cnot_permutation(
    n: int, pairs: tuple[tuple[int, int], ...] | list[tuple[int, int]], device=None
) -> torch.Tensor:
    """Gather index of a sequence of CNOTs applied in the given order.

    Args:
        n: number of qubits.
        pairs: ``(control, target)`` pairs, first applied first.
        device: where to put the index.

    Returns:
        ``index`` (``[2^n]`` int64) such that the new flattened state is
        ``state.reshape(B, -1)[:, index]`` — the whole sequence costs one gather.
    """
    key = tuple((int(c), int(t)) for c, t in pairs)
    return _cnot_permutation_cpu(n, key).to(device)


def apply_permutation(state: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """New state ``state.reshape(B, -1)[:, index]`` reshaped back (see :func:`cnot_permutation`)."""
    batch = state.shape[0]
    return state.reshape(batch, -1).index_select(1, index).reshape(state.shape)


def cnot(state: torch.Tensor, control: int, target: int) -> torch.Tensor:
    """CNOT(control, target): flips ``target`` where ``control`` is 1; keeps real states real."""
    n = _n_wires(state)
    return apply_permutation(state, cnot_permutation(n, ((control, target),), state.device))


def cz(state: torch.Tensor, a: int, b: int) -> torch.Tensor:
    """CZ(a, b): negates the amplitudes where both wires are 1; keeps real states real."""
    n = _n_wires(state)
    _check_wire(a, n)
    _check_wire(b, n)
    if a == b:
        raise ValueError(f"CZ needs two distinct wires, got {a} twice")
    index = torch.arange(2**n, device=state.device)
    both = ((index >> (n - 1 - a)) & 1) & ((index >> (n - 1 - b)) & 1)
    sign = (1 - 2 * both).to(state.real.dtype if state.is_complex() else state.dtype)
    return (state.reshape(state.shape[0], -1) * sign).reshape(state.shape)
