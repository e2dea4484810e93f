"""Amplitude encoding of classical feature vectors into real n-qubit states.

Conventions (identical to PennyLane's
``AmplitudeEmbedding(features, wires=range(n), pad_with=0.0, normalize=True)``):

* a feature vector of length N is zero-padded to 2^n with n = ``num_qubits(N)``;
* it is divided by its Euclidean norm, so the amplitudes are the normalised features;
* feature j becomes the amplitude of basis state |j⟩, and wire 0 is the most
  significant bit of j (so the state tensor ``[B] + [2] * n`` is the padded vector
  reshaped in C order).

All-zero rows have no direction to encode. They are mapped to |0…0⟩ (amplitude 1 on
basis state 0) and the gradient of their state with respect to the features is zero;
no NaN is ever produced. Rows with NaN or infinite features raise a ``ValueError``
naming the offending batch rows.
"""

from __future__ import annotations

import math

import torch

__all__ = ["MAX_QUBITS", "amplitude_encode", "check_finite_rows", "num_qubits"]

#: The largest register qhead will simulate. A state of n qubits holds 2^n amplitudes
#: per example: n = 20 is 4 MiB per example in float32 (128 MiB for a batch of 32, and
#: autograd keeps several copies, plus a 2^n × m measurement table). Feature maps of
#: real backbones need far less (512×7×7 → 15 qubits, 2048×7×7 → 17).
MAX_QUBITS = 20


def num_qubits(n_features: int) -> int:
    """Number of qubits needed to amplitude-encode ``n_features`` values.

    Args:
        n_features: length N of the flattened feature vector (≥ 1).

    Returns:
        ``max(1, ceil(log2(N)))`` (PennyLane uses one wire for a single feature too).

    Raises:
        ValueError: if ``n_features`` is not a positive integer.
    """
    if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
        raise ValueError(f"n_features must be a positive integer, got {n_features!r}")
    return max(1, math.ceil(math.log2(n_features)))


def check_finite_rows(x: torch.Tensor) -> None:
    """Raises ``ValueError`` naming the batch rows of ``x`` (``[B, ...]``) that hold NaN/inf."""
    finite = torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite).flatten().tolist()
        shown = ", ".join(str(i) for i in bad[:10]) + (", …" if len(bad) > 10 else "")
        raise ValueError(
            f"amplitude encoding needs finite features; batch row(s) {shown} "
            f"({len(bad)} of {x.shape[0]}) contain NaN or infinity"
        )


class _Encode(torch.autograd.Function):
    """``[B, N]`` rows divided by their (non-zero, finite) norms, zero-padded to ``dim``.

    One pass forward; the backward is the projection
    ∂ψ/∂x · g = (g − ψ (ψ·g)) / ‖x‖ in two passes (autograd would take about eight).
    """

    @staticmethod
    def forward(ctx, flat, norm, dim):
        # Only the padding needs zeros: zeroing the whole buffer first would cost a pass.
        out = flat.new_empty(flat.shape[0], dim)
        out[:, flat.shape[1] :].zero_()
        torch.div(flat, norm, out=out[:, : flat.shape[1]])
        ctx.save_for_backward(out, norm)
        ctx.n_features = flat.shape[1]
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        psi, norm = ctx.saved_tensors
        g = grad[:, : ctx.n_features]
        p = psi[:, : ctx.n_features]
        dot = torch.linalg.vecdot(g, p, dim=1).unsqueeze(1)
        return torch.addcmul(g, p, -dot).div_(norm), None, None


def _normalise(flat: torch.Tensor, norm: torch.Tensor) -> torch.Tensor | None:
    """Rows divided by their norm; all-zero rows → e_0 with zero gradient. ``[B, N]``.

    Returns None when every norm is fine (the caller takes the fast path).
    """
    tiny = torch.finfo(flat.dtype).tiny
    ok = (norm > tiny**0.5) & torch.isfinite(norm)
    if bool(ok.all()):
        return None
    # Rare path: zero rows, or norms that under/overflow in the sum of squares.
    # Dividing by the (detached) largest magnitude first keeps the sum of squares in
    # range; the result is scale invariant, so the detached scale leaves the gradient
    # unchanged.
    scale = flat.detach().abs().amax(dim=1, keepdim=True)
    zero = scale == 0
    scaled = flat / torch.where(zero, torch.ones_like(scale), scale)
    sq = (scaled * scaled).sum(dim=1, keepdim=True)
    # The double `where` keeps zero rows out of sqrt/divide in both passes (no NaN grads).
    norm = torch.sqrt(torch.where(zero, torch.ones_like(sq), sq))
    state = scaled / norm
    basis0 = torch.zeros_like(state[:1])
    basis0[:, 0] = 1
    return torch.where(zero, basis0, state)


def amplitude_encode(
    x: torch.Tensor, n_qubits: int | None = None, *, check_finite: bool = True
) -> torch.Tensor:
    """Encodes a batch of feature vectors as normalised real state vectors.

    Args:
        x: features ``[B, N]`` or ``[B, C, H, W]`` (any ``[B, ...]``; flattened in C order,
            so for a feature map the channel index is the most significant). Real
            floating point; float16/bfloat16 are computed in float32.
        n_qubits: register size; default ``num_qubits(N)``. Must satisfy 2^n ≥ N.
        check_finite: raise on NaN/inf rows (costs one device synchronisation).

    Returns:
        State ``[B] + [2] * n`` with real amplitudes ``pad(x) / ‖x‖``. All-zero rows
        become |0…0⟩ with zero gradient.

    Raises:
        ValueError: for a non-floating or complex input, fewer than 2 dimensions,
            ``n_qubits`` too small, or non-finite rows (the message names the rows).
    """
    if x.dim() < 2:
        raise ValueError(f"expected features [B, N] or [B, C, H, W], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"amplitude encoding needs real floating-point features, got {x.dtype}")
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    batch = x.shape[0]
    flat = x.reshape(batch, -1)
    n_features = flat.shape[1]
    n = num_qubits(n_features) if n_qubits is None else n_qubits
    if n < 1 or 2**n < n_features:
        raise ValueError(
            f"n_qubits={n_qubits} cannot hold {n_features} features; need at least "
            f"{num_qubits(n_features)}"
        )
    dim = 2**n
    norm = torch.linalg.vector_norm(flat, dim=1, keepdim=True)
    # NaN/inf features make the norm non-finite; only then is the full scan needed.
    if check_finite and not bool(torch.isfinite(norm).all()):
        check_finite_rows(flat)
    state = _normalise(flat, norm)
    if state is None:
        # The norm is passed detached: its contribution to the gradient is the
        # projection term in _Encode.backward.
        state = _Encode.apply(flat, norm.detach(), dim)
    elif dim > n_features:
        state = torch.nn.functional.pad(state, (0, dim - n_features))
    return state.reshape([batch] + [2] * n)
