"""Statistics for multi-seed comparisons: mean ± sample std and paired t intervals.

Conventions (stated on every table the report writes):

* ``std`` is the **sample** standard deviation (``ddof=1``); it is undefined (``nan``)
  for a single seed, and the table then shows ``n=1`` and no ``±``.
* A paired difference ``a − b`` is taken seed by seed over the seeds both arms ran, so
  that the seed-dependent part of the variance (initialisation, data order) cancels.
  Its 95 % interval is ``mean ± t_{0.975, n−1} · s / √n`` (Student t, two-sided).
* A difference is called *significant at 95 %* when that interval excludes zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scipy import stats as _scipy_stats

from qhead.errors import ConfigError


def _finite(values: Sequence[float], what: str) -> list[float]:
    out = [float(v) for v in values]
    for v in out:
        if not math.isfinite(v):
            raise ValueError(f"{what}: non-finite value {v!r} in {out!r}")
    return out


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean; ``nan`` for an empty sequence."""
    vals = _finite(values, "mean")
    return sum(vals) / len(vals) if vals else math.nan


def sample_std(values: Sequence[float]) -> float:
    """Sample standard deviation (``ddof=1``); ``nan`` for fewer than two values."""
    vals = _finite(values, "sample_std")
    n = len(vals)
    if n < 2:
        return math.nan
    m = sum(vals) / n
    return math.sqrt(sum((v - m) ** 2 for v in vals) / (n - 1))


def t_quantile(confidence: float, dof: int) -> float:
    """Two-sided Student-t critical value, e.g. ``t_quantile(0.95, 4) = 2.776``.

    Args:
        confidence: coverage of the two-sided interval, in (0, 1).
        dof: degrees of freedom (``n − 1`` for ``n`` paired seeds), ≥ 1.
    """
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence!r}")
    if dof < 1:
        raise ConfigError(f"degrees of freedom must be >= 1, got {dof!r}")
    return float(_scipy_stats.t.ppf(0.5 + confidence / 2.0, dof))


@dataclass(frozen=True)
class Summary:
    """Mean ± sample std of one metric over ``n`` seeds."""

    n: int
    mean: float
    std: float

    def format(self, scale: float = 100.0, digits: int = 2) -> str:
        """``"81.23 ± 1.05"`` (values scaled, e.g. fractions to percent); ``n=1`` drops ``±``."""
        if self.n == 0:
            return "—"
        if self.n < 2:
            return f"{self.mean * scale:.{digits}f}"
        return f"{self.mean * scale:.{digits}f} ± {self.std * scale:.{digits}f}"


def summarize(values: Sequence[float]) -> Summary:
    """Summary (n, mean, sample std) of a sequence of per-seed values."""
    return Summary(n=len(values), mean=mean(values), std=sample_std(values))


@dataclass(frozen=True)
class PairedDifference:
    """Seed-paired difference ``a − b`` with a Student-t confidence interval.

    Attributes:
        seeds: the seeds present in both arms, sorted.
        n: ``len(seeds)``.
        mean: mean of the per-seed differences.
        std: their sample standard deviation (``nan`` when ``n < 2``).
        low, high: the two-sided interval bounds (``nan`` when ``n < 2``).
        confidence: interval coverage, e.g. ``0.95``.
    """

    seeds: tuple[int, ...]
    n: int
    mean: float
    std: float
    low: float
    high: float
    confidence: float

    @property
    def has_interval(self) -> bool:
        return self.n >= 2 and math.isfinite(self.low) and math.isfinite(self.high)

    @property
    def significant(self) -> bool:
        """True when the interval excludes zero (a zero-variance nonzero difference counts)."""
        return self.has_interval and (self.low > 0.0 or self.high < 0.0)

    def format(self, scale: float = 100.0, digits: int = 2) -> str:
        """``"+1.20 [−0.40, +2.80]"`` in the scaled unit; without interval when ``n < 2``."""
        if self.n == 0:
            return "—"
        if not self.has_interval:
            return f"{self.mean * scale:+.{digits}f} (n={self.n}, no CI)"
        return (
            f"{self.mean * scale:+.{digits}f} "
            f"[{self.low * scale:+.{digits}f}, {self.high * scale:+.{digits}f}]"
        )

    def conclusion(self, a: str, b: str, metric: str, unit: str = "pp") -> str:
        """A sentence a reader can act on, e.g. ``"quantum better than classical by ..."``.

        Args:
            a, b: arm names of the difference ``a − b``.
            metric: metric name for the sentence (``"accuracy"``).
            unit: unit of the scaled values (percentage points by default).
        """
        level = f"{self.confidence:.0%}"
        if self.n == 0:
            return f"{metric}: no common seeds between {a} and {b}"
        if not self.has_interval:
            return (
                f"{metric}: {a} − {b} = {self.mean * 100:+.2f} {unit} from n={self.n} seed(s); "
                f"too few seeds for a {level} interval"
            )
        ci = f"[{self.low * 100:+.2f}, {self.high * 100:+.2f}] {unit}"
        if not self.significant:
            return (
                f"{metric}: {a} vs {b}: difference not significant at {level} "
                f"({self.mean * 100:+.2f} {unit}, CI {ci}, n={self.n})"
            )
        better, worse = (a, b) if self.mean > 0 else (b, a)
        return (
            f"{metric}: {better} better than {worse} by {abs(self.mean) * 100:.2f} {unit} "
            f"({level} CI of {a} − {b}: {ci}, n={self.n})"
        )


def paired_difference(
    a: Mapping[int, float], b: Mapping[int, float], confidence: float = 0.95
) -> PairedDifference:
    """Paired difference ``a − b`` over the seeds present in both mappings.

    Args:
        a, b: per-seed metric values, ``{seed: value}``.
        confidence: coverage of the two-sided t interval.

    Returns:
        The :class:`PairedDifference`; seeds present in only one arm are ignored
        (the report lists them as unpaired).
    """
    seeds = tuple(sorted(set(a) & set(b)))
    diffs = [float(a[s]) - float(b[s]) for s in seeds]
    n = len(diffs)
    m = mean(diffs)
    s = sample_std(diffs)
    if n >= 2:
        half = t_quantile(confidence, n - 1) * s / math.sqrt(n)
        low, high = m - half, m + half
    else:
        low = high = math.nan
    return PairedDifference(
        seeds=seeds, n=n, mean=m, std=s, low=low, high=high, confidence=confidence
    )
