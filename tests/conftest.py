"""Fixtures shared by every test package.

``amp=auto`` means bf16 autocast on a CPU with native bf16 instructions and float32
elsewhere, so a test of anything that runs under ``amp=auto`` sees other numbers on
other machines. :func:`native_bf16` runs such a test twice, with
:func:`qhead.engine.runtime.cpu_has_native_bf16` answering True and then False, so one
run on either kind of CPU shows what CI on the other kind will see.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

#: where ``resolve_amp`` looks the function up (patch it there, not where it is defined)
BF16_PROBE = "qhead.engine.runtime.cpu_has_native_bf16"
BF16_ANSWERS = (True, False)
BF16_IDS = ("native-bf16", "no-native-bf16")


@contextmanager
def pretend_native_bf16(answer: bool) -> Iterator[bool]:
    """While open, qhead believes the CPU has (``True``) or lacks native bf16."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BF16_PROBE, lambda: answer)
        yield answer


@pytest.fixture(params=BF16_ANSWERS, ids=BF16_IDS)
def native_bf16(request: pytest.FixtureRequest) -> Iterator[bool]:
    """The test runs once as on a CPU with native bf16 and once as on one without."""
    with pretend_native_bf16(request.param) as answer:
        yield answer


@dataclass(frozen=True)
class Bf16Answer:
    """What :func:`cpu_has_native_bf16` is made to answer, for module-scoped fixtures."""

    native: bool

    def patched(self):
        """A context in which qhead believes this answer (see :func:`pretend_native_bf16`)."""
        return pretend_native_bf16(self.native)


@pytest.fixture(scope="module", params=BF16_ANSWERS, ids=BF16_IDS)
def native_bf16_module(request: pytest.FixtureRequest) -> Bf16Answer:
    """For module-scoped fixtures (a trained run): the answer, without a patch; open
    ``answer.patched()`` where it matters (a module-wide patch would leak into the
    module's other tests)."""
    return Bf16Answer(request.param)
