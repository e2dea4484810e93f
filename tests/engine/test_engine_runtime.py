"""Which precision ``amp`` resolves to, on CPUs with and without native bf16."""

from __future__ import annotations

import pytest
import torch

from qhead.engine.runtime import make_step_context, resolve_amp
from qhead.errors import ConfigError

CPU = torch.device("cpu")


def test_amp_auto_on_cpu_follows_native_bf16(native_bf16: bool) -> None:
    assert resolve_amp("auto", CPU) == (torch.bfloat16 if native_bf16 else None)
    ctx = make_step_context(torch.nn.Linear(2, 2), CPU, "auto")
    assert ctx.describe() == ("cpu bfloat16 NCHW" if native_bf16 else "cpu float32 NCHW")


def test_explicit_amp_does_not_depend_on_the_cpu(native_bf16: bool) -> None:
    assert resolve_amp("off", CPU) is None
    assert resolve_amp("bf16", CPU) == torch.bfloat16
    with pytest.raises(ConfigError, match="amp=fp16 is for CUDA only"):
        resolve_amp("fp16", CPU)
