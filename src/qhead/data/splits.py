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

:func:`grouped_stratified_split` does the same with whole groups (clusters of
near-duplicate images): step 1–2 fix ``t_c`` in images; within each class the groups,
sorted by id, are shuffled and taken first-fit (a group goes to test if it fits in the
slots left), so no group is ever split and ``t_c`` is met exactly whenever the class has
enough small groups left to fill the last slots (singletons, in practice).
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


def grouped_stratified_split(
    keys: Sequence[str],
    labels: Sequence[str],
    groups: Sequence[str],
    *,
    seed: int,
    n_test: int,
) -> list[str]:
    """Assigns ``"train"`` or ``"test"`` to each item, whole groups at a time, by label.

    Args:
        keys: unique item identifiers; they fix the order of the result.
        labels: class name of each item.
        groups: group id of each item; every member of a group must have the same label.
        seed: the split seed.
        n_test: total test size in items (shared over classes as in
            :func:`stratified_split`); a class gets fewer than its share only if no
            remaining group fits the last slots.

    Returns:
        the split of each item, in the order of ``keys``; members of a group share it.

    Raises:
        ValueError: for mismatched lengths, repeated keys, or a group with two labels.
    """
    if not len(keys) == len(labels) == len(groups):
        raise ValueError("keys, labels and groups must have the same length")
    if len(set(keys)) != len(keys):
        raise ValueError("split keys must be unique")
    label_of: dict[str, str] = {}
    size: dict[str, int] = defaultdict(int)
    for label, group in zip(labels, groups, strict=True):
        if label_of.setdefault(group, label) != label:
            raise ValueError(f"group {group!r} holds two labels ({label_of[group]!r}, {label!r})")
        size[group] += 1
    class_sizes: dict[str, int] = defaultdict(int)
    for label in labels:
        class_sizes[label] += 1
    counts = allocate_test_counts(dict(class_sizes), n_test)
    rng = np.random.default_rng(seed)
    test_groups: set[str] = set()
    for label in sorted(class_sizes):
        members = sorted(g for g, lab in label_of.items() if lab == label)
        left = counts[label]
        for i in rng.permutation(len(members)):
            if left == 0:
                break
            if size[members[i]] <= left:
                test_groups.add(members[i])
                left -= size[members[i]]
    return ["test" if g in test_groups else "train" for g in groups]


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
