"""The data configuration: which dataset, where it lives, and how images are loaded."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from qhead.errors import ConfigError

NORMALIZATIONS: tuple[str, ...] = ("imagenet", "none")
SPLIT_PROTOCOLS: tuple[str, ...] = ("paper", "grouped")
"""``data.split`` values: the paper's split, or near-duplicate clusters kept together."""


def _default_workers() -> int:
    return min(4, os.cpu_count() or 1)


@dataclass
class DataConfig:
    """How to build the train/test datasets.

    Works as an OmegaConf structured config (only str/int/float/bool/Optional fields).

    Attributes:
        name: a key of :data:`qhead.data.DATASETS` (``qhead list`` shows them):
            ``digits`` (embedded, no files), ``imagefolder``, ``csv``, ``manifest`` and the
            paper's ``busi``, ``croatian-fish``, ``aircraft737``, ``apples-or-tomatoes``.
        root: the data location. A folder for ``imagefolder``/``manifest``/paper datasets
            (raw publisher layout or a folder written by ``qhead prepare``), the CSV file
            for ``csv``; ignored by ``digits``.
        image_size: side of the square images fed to the model (images are resized,
            not cropped, to ``image_size × image_size``).
        hflip: random horizontal flip (p = 0.5) on the training split only.
        cache: keep decoded, resized uint8 images in memory; they are decoded once when
            the datasets are built, so later epochs (and forked DataLoader workers) never
            decode again. Memory: ``3 · image_size²`` bytes per image.
        skip_bad: with ``True``, every file is decoded once at build time and unreadable
            ones are dropped with a warning and listed in ``DatasetSplits.skipped``; with
            ``False`` an unreadable file raises :class:`~qhead.errors.DataError` naming it.
        split_seed: seed of the stratified train/test split for datasets that have no
            given split (``digits``, ``imagefolder`` without ``train/``+``test/``, ``csv``
            without a split column, raw ``croatian-fish``/``busi``).
        test_fraction: fraction of each such dataset put in the test split, in (0, 1).
            The paper datasets ignore it and use their protocols (``qhead prepare``).
        normalize: ``imagenet`` (mean/std of ImageNet, what torchvision backbones
            expect) or ``none`` (pixels in [0, 1]).
        num_workers: DataLoader worker processes (used by the engine).
        max_per_class: keep at most this many images per class and split (the first
            ones of a seeded shuffle); ``None`` keeps all. For quick tests and demos.
        verify_sha256: check each file against the sha256 recorded in a manifest
            when it is read (a changed file raises :class:`~qhead.errors.DataError`).
        split: the split protocol of a paper dataset: ``paper`` (the paper's protocol,
            the default) or ``grouped`` (clusters of exact and near-duplicate images kept
            inside one split, cross-class clusters dropped; for the datasets the paper
            splits at random: ``busi``, ``croatian-fish``). A prepared ``root`` must have
            been prepared with the same protocol (``qhead prepare --split``).
    """

    name: str = "digits"
    root: Optional[str] = None  # noqa: UP045 (OmegaConf needs Optional)
    image_size: int = 224
    hflip: bool = True
    cache: bool = False
    skip_bad: bool = False
    split_seed: int = 0
    test_fraction: float = 0.2
    normalize: str = "imagenet"
    num_workers: int = _default_workers()
    max_per_class: Optional[int] = None  # noqa: UP045
    verify_sha256: bool = True
    split: str = "paper"

    def __post_init__(self) -> None:
        # Imported here: the registry module imports this one.
        from qhead.data.datasets import DATASETS

        if self.name not in DATASETS:
            raise ConfigError(
                f"data.name={self.name!r} is not a dataset; allowed: {', '.join(DATASETS.names())}"
            )
        if not isinstance(self.image_size, int) or not 8 <= self.image_size <= 4096:
            raise ConfigError(
                f"data.image_size={self.image_size!r} must be an integer in [8, 4096]"
            )
        if not 0.0 < float(self.test_fraction) < 1.0:
            raise ConfigError(
                f"data.test_fraction={self.test_fraction!r} must be in the open interval (0, 1)"
            )
        if self.normalize not in NORMALIZATIONS:
            raise ConfigError(
                f"data.normalize={self.normalize!r}; allowed: {', '.join(NORMALIZATIONS)}"
            )
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ConfigError(f"data.num_workers={self.num_workers!r} must be an integer >= 0")
        if self.max_per_class is not None and (
            not isinstance(self.max_per_class, int) or self.max_per_class < 1
        ):
            raise ConfigError(
                f"data.max_per_class={self.max_per_class!r} must be None or an integer >= 1"
            )
        if self.split not in SPLIT_PROTOCOLS:
            raise ConfigError(
                f"data.split={self.split!r}; allowed: {', '.join(SPLIT_PROTOCOLS)}"
            )
        if self.split == "grouped":
            from qhead.data.prepare import PREPARERS, supports_grouped

            if not supports_grouped(self.name):
                allowed = [n for n in PREPARERS.names() if supports_grouped(n)]
                raise ConfigError(
                    f"data.split='grouped' is a protocol of the paper datasets split at random "
                    f"({', '.join(allowed)}), not of data.name={self.name!r}"
                )
        if not isinstance(self.split_seed, int):
            raise ConfigError(f"data.split_seed={self.split_seed!r} must be an integer")
