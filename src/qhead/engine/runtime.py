"""Where and how the training step runs: device, mixed precision, memory format, seeds.

The same :func:`train_step` is used by :func:`qhead.engine.train` and by
``benchmarks/train_step.py``, so the benchmark measures the step users get.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from qhead.errors import ConfigError, TrainingDivergedError

__all__ = [
    "StepContext",
    "cpu_has_native_bf16",
    "derive_seed",
    "make_step_context",
    "prepare_model",
    "resolve_device",
    "seed_everything",
    "set_deterministic",
    "train_step",
]


_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def derive_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from integer keys, e.g. ``(seed, epoch, index)``.

    Chained SplitMix64 (cheap enough to call once per sample): nearby keys give
    unrelated seeds.
    """
    h = 0x6A09E667F3BCC908
    for key in keys:
        h = _splitmix64(h ^ (int(key) & _MASK64))
    return h >> 1


def seed_everything(seed: int) -> None:
    """Seeds Python's ``random``, NumPy's global RNG and torch (CPU and all CUDA devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_deterministic(enabled: bool) -> None:
    """Deterministic kernels (``torch.use_deterministic_algorithms``) and cuDNN flags.

    ``warn_only=True``: an op without a deterministic implementation warns instead of
    stopping a long run; on CPU all ops qhead uses are deterministic for a fixed thread
    count.
    """
    if enabled:
        # cuBLAS needs a fixed workspace for reproducible matmuls (CUDA docs).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # the setter imports torch._inductor (seconds): only call it to change something
    if enabled or torch.are_deterministic_algorithms_enabled():
        torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """``auto`` → ``cuda[:local_rank]`` if CUDA is available, else ``cpu``.

    Raises:
        ConfigError: if CUDA is requested but not available.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device={name!r} but CUDA is not available; use device=cpu")
        if name == "cuda" and local_rank is not None:
            name = f"cuda:{local_rank}"
    return torch.device(name)


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN has native bf16 kernels on this CPU (AVX512-BF16 / AMX).

    Without them bf16 convolutions are emulated and much slower than float32 (measured on
    an AVX2-only AMD EPYC: a ResNet-18 training step at batch 32, 224 px, 10-20x
    slower), so ``amp=auto`` stays float32 there.
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device`` (``None``: float32, no autocast).

    Raises:
        ConfigError: ``fp16`` on CPU.
    """
    if mode == "off":
        return None
    if device.type == "cuda":
        if mode == "fp16":
            return torch.float16
        if mode == "bf16":
            return torch.bfloat16
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if mode == "fp16":
        raise ConfigError("amp=fp16 is for CUDA only; on CPU use amp=bf16 or amp=off")
    if mode == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if cpu_has_native_bf16() else None


def has_conv2d(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


@dataclass
class StepContext:
    """How a training step runs.

    Attributes:
        device: where tensors live.
        amp_dtype: autocast dtype (``None``: float32).
        channels_last: NHWC memory format for model and images (faster oneDNN/cuDNN
            convolutions).
        scaler: loss scaler for fp16 on CUDA (``None`` otherwise).
        grad_clip: max global gradient norm or ``None``.
        label_smoothing: cross-entropy label smoothing.
    """

    device: torch.device
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    scaler: torch.amp.GradScaler | None = None
    grad_clip: float | None = None
    label_smoothing: float = 0.0

    def describe(self) -> str:
        amp = str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "float32"
        layout = "channels_last" if self.channels_last else "NCHW"
        return f"{self.device} {amp} {layout}"

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.amp_dtype is None:
            yield
        else:
            with torch.autocast(device_type=self.device.type, dtype=self.amp_dtype):
                yield

    def to_device(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        if self.channels_last and images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        return images


#: ``channels_last=auto`` on CPU only from this input side on. channels_last is the
#: layout oneDNN's and cuDNN's convolutions prefer; on the 2-core AVX2 EPYC qhead was
#: developed on, ResNet-18 at 224 px ran equally fast in both layouts (1.03x, interleaved
#: benchmark) and a small CNN at 32 px 1.5x slower in channels_last (reorders dominate).
CHANNELS_LAST_MIN_SIZE = 96


def make_step_context(
    model: nn.Module,
    device: torch.device,
    amp: str = "auto",
    channels_last: str = "auto",
    grad_clip: float | None = None,
    label_smoothing: float = 0.0,
    image_size: int | None = None,
) -> StepContext:
    """Resolves the ``auto`` switches for ``model`` on ``device``.

    ``channels_last=auto`` is on for models with 2-D convolutions, on CUDA always and on
    CPU for inputs of at least :data:`CHANNELS_LAST_MIN_SIZE` px (``image_size``; taken
    from ``model.config.image_size`` when not given).
    """
    amp_dtype = resolve_amp(amp, device)
    if image_size is None:
        image_size = getattr(getattr(model, "config", None), "image_size", None)
    if channels_last == "auto":
        use_cl = has_conv2d(model) and (
            device.type == "cuda" or image_size is None or image_size >= CHANNELS_LAST_MIN_SIZE
        )
    else:
        use_cl = channels_last == "on"
    scaler = None
    if device.type == "cuda" and amp_dtype == torch.float16:
        scaler = torch.amp.GradScaler("cuda")
    return StepContext(device, amp_dtype, use_cl, scaler, grad_clip, label_smoothing)


def prepare_model(model: nn.Module, ctx: StepContext) -> nn.Module:
    """Moves ``model`` to the context's device and memory format (in place)."""
    model.to(ctx.device)
    if ctx.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def train_step(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    ctx: StepContext,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step on a batch.

    Args:
        model: in training mode, already prepared with :func:`prepare_model`.
        images: ``[B, 3, S, S]`` (any device; moved here).
        labels: ``[B]`` class indices.
        optimizer: the optimizer of ``model``'s parameters.
        ctx: the step context.

    Returns:
        ``(loss, logits)``: the detached mean loss (scalar) and logits ``[B, classes]``
        in float32.
    """
    images = ctx.to_device(images)
    labels = labels.to(ctx.device, non_blocking=True)
    optimizer.zero_grad(set_to_none=True)
    with ctx.autocast():
        logits = model(images)
    # the loss in float32: bf16 logits would quantise it
    loss = nn.functional.cross_entropy(
        logits.float(), labels, label_smoothing=ctx.label_smoothing
    )
    if not torch.isfinite(loss):
        raise TrainingDivergedError(
            f"training loss is {loss.item()} (not finite); lower lr or turn amp off"
        )
    if ctx.scaler is not None:
        ctx.scaler.scale(loss).backward()
        if ctx.grad_clip is not None:
            ctx.scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), ctx.grad_clip)
        ctx.scaler.step(optimizer)
        ctx.scaler.update()
    else:
        loss.backward()
        if ctx.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), ctx.grad_clip)
        optimizer.step()
    return loss.detach(), logits.detach().float()
