"""Statistics checked against hand-computed values (and scipy's t for the quantile)."""

import math

import pytest

from qhead.errors import ConfigError
from qhead.experiments.stats import (
    mean,
    paired_difference,
    sample_std,
    summarize,
    t_quantile,
)


def test_mean_and_sample_std_by_hand():
    # mean 0.82; deviations ±0.02, 0 -> sum of squares 8e-4, / (n-1) = 4e-4 -> std 0.02
    values = [0.80, 0.84, 0.82]
    assert mean(values) == pytest.approx(0.82)
    assert sample_std(values) == pytest.approx(0.02)
    s = summarize(values)
    assert (s.n, s.format()) == (3, "82.00 ± 2.00")


def test_std_of_one_value_is_undefined_and_shown_without_plus_minus():
    assert math.isnan(sample_std([0.5]))
    assert summarize([0.5]).format() == "50.00"
    assert summarize([]).format() == "—"


def test_non_finite_values_are_rejected():
    with pytest.raises(ValueError, match="non-finite"):
        mean([0.1, float("nan")])


def test_t_quantiles_match_tables():
    # two-sided 95 %: t_{0.975, 2} = 4.3027, t_{0.975, 4} = 2.7764 (printed t tables)
    assert t_quantile(0.95, 2) == pytest.approx(4.302653, abs=1e-6)
    assert t_quantile(0.95, 4) == pytest.approx(2.776445, abs=1e-6)
    with pytest.raises(ConfigError, match="degrees of freedom"):
        t_quantile(0.95, 0)
    with pytest.raises(ConfigError, match="confidence"):
        t_quantile(1.5, 3)


def test_paired_difference_significant_by_hand():
    # differences 0.01..0.05: mean 0.03, s = sqrt(2.5)·0.01, half width
    # 2.776445 · 0.0158114 / sqrt(5) = 0.0196324 -> CI [0.0103676, 0.0496324]
    b = {s: 0.70 for s in range(5)}
    a = {s: 0.70 + 0.01 * (s + 1) for s in range(5)}
    a[9] = 0.99  # unpaired seed: ignored
    d = paired_difference(a, b)
    assert d.seeds == (0, 1, 2, 3, 4) and d.n == 5
    assert d.mean == pytest.approx(0.03)
    assert d.std == pytest.approx(0.0158114, abs=1e-7)
    assert d.low == pytest.approx(0.0103676, abs=1e-6)
    assert d.high == pytest.approx(0.0496324, abs=1e-6)
    assert d.significant
    sentence = d.conclusion("quantum", "classical", "Acc")
    assert "quantum better than classical by 3.00 pp" in sentence
    assert "[+1.04, +4.96]" in sentence


def test_paired_difference_not_significant_by_hand():
    # differences 0.02, 0.04, 0.01: mean 0.023333, s = 0.0152753,
    # half = 4.302653 · 0.0152753 / sqrt(3) = 0.0379463 -> CI [-0.014613, 0.061280]
    a = {0: 0.80, 1: 0.84, 2: 0.82}
    b = {0: 0.78, 1: 0.80, 2: 0.81}
    d = paired_difference(a, b)
    assert d.mean == pytest.approx(0.0233333, abs=1e-7)
    assert d.low == pytest.approx(-0.014613, abs=1e-6)
    assert d.high == pytest.approx(0.061280, abs=1e-6)
    assert not d.significant
    assert "not significant at 95%" in d.conclusion("quantum", "classical", "Acc")


def test_negative_difference_names_the_better_arm():
    d = paired_difference({0: 0.5, 1: 0.6, 2: 0.55}, {0: 0.7, 1: 0.75, 2: 0.72})
    assert d.significant and d.mean < 0
    assert "classical better than twin" in d.conclusion("twin", "classical", "F1")


def test_single_common_seed_gives_no_interval():
    d = paired_difference({0: 0.9, 1: 0.8}, {1: 0.7})
    assert d.n == 1 and not d.has_interval and not d.significant
    assert "no CI" in d.format()
    assert "too few seeds" in d.conclusion("quantum", "classical", "Acc")
