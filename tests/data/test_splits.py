from __future__ import annotations

import random

import pytest

from qhead.data.splits import allocate_test_counts, limit_per_class, stratified_split
from qhead.errors import ConfigError


def test_busi_sizes_by_largest_remainder():
    # 778 images after dropping the duplicate pair; 158 test images as in the paper
    counts = allocate_test_counts({"benign": 436, "malignant": 209, "normal": 133}, 158)
    assert counts == {"benign": 89, "malignant": 42, "normal": 27}


@pytest.mark.parametrize("seed", range(5))
def test_allocation_sums_exactly_and_is_proportional(seed):
    rng = random.Random(seed)
    sizes = {f"c{i}": rng.randint(1, 60) for i in range(rng.randint(2, 9))}
    total = sum(sizes.values())
    n_test = rng.randint(0, total)
    counts = allocate_test_counts(sizes, n_test)
    assert sum(counts.values()) == n_test
    for c, n in sizes.items():
        assert abs(counts[c] - n_test * n / total) < 1  # within one of the exact quota
        assert 0 <= counts[c] <= n


def test_allocation_rejects_impossible_sizes():
    with pytest.raises(ConfigError):
        allocate_test_counts({"a": 2}, 3)


def test_split_independent_of_input_order_and_seeded():
    keys = [f"k{i:03d}" for i in range(100)]
    labels = ["a" if i % 3 else "b" for i in range(100)]
    split = dict(zip(keys, stratified_split(keys, labels, seed=4, test_fraction=0.2),
                     strict=True))
    order = list(range(100))
    random.Random(1).shuffle(order)
    shuffled = stratified_split([keys[i] for i in order], [labels[i] for i in order], seed=4,
                                test_fraction=0.2)
    assert {keys[i]: s for i, s in zip(order, shuffled, strict=True)} == split
    other = dict(zip(keys, stratified_split(keys, labels, seed=5, test_fraction=0.2),
                     strict=True))
    assert other != split
    assert sum(s == "test" for s in split.values()) == 20
    assert sum(split[k] == "test" for k, lab in zip(keys, labels, strict=True) if lab == "b") == 7


def test_split_rejects_duplicate_keys():
    with pytest.raises(ValueError, match="unique"):
        stratified_split(["a", "a"], ["x", "y"], seed=0, n_test=1)


def test_limit_per_class():
    labels = [0] * 10 + [1] * 3
    keep = limit_per_class(labels, 4, seed=0)
    assert keep == sorted(keep)
    assert [labels[i] for i in keep].count(0) == 4 and [labels[i] for i in keep].count(1) == 3
    assert limit_per_class(labels, None, seed=0) == list(range(13))
