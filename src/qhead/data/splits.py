"""Deterministic stratified train/test splits.

The split depends only on the list of (key, label) pairs, the test size and the seed —
not on the order the files were listed in, nor on the scikit-learn version — so that
``qhead prepare`` and the in-memory preparation of a raw folder agree, and re-runs are
byte-identical.

How the sizes are computed:

1. total test size ``T``: given directly (``n_test``), or ``floor(test_fraction · N + 0.5)``;
2. per class ``c`` with ``n_c`` items, the quota ``q_c = T · n_c / N`` is rounded down,
   and the ``T − Σ floor(q_c)`` remaining test slots go to the classes with the largest
   fractional parts (ties: the class with more items, then the smaller class name)
   — the largest-remainder (Hamilton) method, so the total is exactly ``T``;
3. within each class, the items are sorted by key, shuffled with
   ``numpy.random.default_rng(seed)`` (classes visited in sorted order, one generator),
   and the first ``t_c`` go to the test split.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from qhead.errors import ConfigError


def allocate_test_counts(class_sizes: dict[str, int], n_test: int) -> dict[str, int]:
    """Splits ``n_test`` test slots over classes in proportion to their sizes.

    Args:
        class_sizes: class name -> number of items.
        n_test: total number of test items, ``0 <= n_test <= sum(class_sizes)``.

    Returns:
        class name -> number of test items; the values sum to ``n_test``.
    """
    total = sum(class_sizes.values())
    if not 0 <= n_test <= total:
        raise ConfigError(f"test size {n_test} must be between 0 and the {total} items")
    if total == 0:
        return {}
    quotas = {c: n_test * n / total for c, n in class_sizes.items()}
    counts = {c: math.floor(q) for c, q in quotas.items()}
    left = n_test - sum(counts.values())
    order = sorted(class_sizes, key=lambda c: (-(quotas[c] - counts[c]), -class_sizes[c], c))
    for c in order[:left]:
        counts[c] += 1
    return counts


def stratified_split(
    keys: Sequence[str],
    labels: Sequence[str],
    *,
    seed: int,
    test_fraction: float | None = None,
    n_test: int | None = None,
) -> list[str]:
    """Assigns ``"train"`` or ``"test"`` to each item, stratified by label.

    Args:
        keys: unique item identifiers (e.g. relative paths); they fix the order.
        labels: class name of each item.
        seed: the split seed.
        test_fraction: fraction of items in the test split (used if ``n_test`` is None).
        n_test: exact total test size.

    Returns:
        the split of each item, in the order of ``keys``.
    """
    if len(keys) != len(labels):
        raise ValueError("keys and labels must have the same length")
    if len(set(keys)) != len(keys):
        raise ValueError("split keys must be unique")
    if n_test is None:
        if test_fraction is None:
            raise ValueError("give test_fraction or n_test")
        n_test = math.floor(test_fraction * len(keys) + 0.5)
    by_class: dict[str, list[str]] = defaultdict(list)
    for key, label in zip(keys, labels, strict=True):
        by_class[label].append(key)
    counts = allocate_test_counts({c: len(v) for c, v in by_class.items()}, n_test)
    rng = np.random.default_rng(seed)
    test_keys: set[str] = set()
    for label in sorted(by_class):
        members = sorted(by_class[label])
        order = rng.permutation(len(members))
        test_keys.update(members[i] for i in order[: counts[label]])
    return ["test" if k in test_keys else "train" for k in keys]


def limit_per_class(labels: Sequence[int], limit: int | None, seed: int) -> list[int]:
    """Indices of at most ``limit`` items per class (a seeded choice, kept in order)."""
    if limit is None:
        return list(range(len(labels)))
    rng = np.random.default_rng(seed + 7919)  # not the split's stream
    keep: list[int] = []
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_class[label].append(i)
    for label in sorted(by_class):
        idx = by_class[label]
        chosen = rng.permutation(len(idx))[:limit]
        keep.extend(idx[i] for i in chosen)
    return sorted(keep)
