"""Data loading whose randomness is a pure function of ``(seed, epoch, sample index)``.

The sampler yields ``(epoch, index)`` pairs; :class:`IndexedDataset` seeds the RNGs
from them before calling the wrapped dataset (whose augmentation draws from the global
torch RNG). Consequences: shuffling and augmentation do not depend on the number of
DataLoader workers, on persistent workers, or on where a run was interrupted, which is
what makes ``--resume`` exact at the epoch level.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from qhead.engine.distributed import DistInfo
from qhead.engine.runtime import derive_seed

__all__ = ["EpochSampler", "IndexedDataset", "make_loader"]


class EpochSampler(Sampler):
    """Per-epoch permutation (or identity), sharded over ranks, as ``(epoch, index)``.

    With R ranks the index list is padded (repeating its head) to a multiple of R, as
    :class:`torch.utils.data.DistributedSampler` does; evaluation removes the repeats
    by index (:func:`qhead.engine.distributed.gather_eval`).
    """

    def __init__(self, size: int, seed: int, shuffle: bool, dist: DistInfo | None = None) -> None:
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.dist = dist or DistInfo()
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(derive_seed(self.seed, 1, self.epoch))
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        world = self.dist.world_size
        total = math.ceil(self.size / world) * world if self.size else 0
        while len(order) < total:
            order += order[: total - len(order)]
        return order[self.dist.rank : total : world]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return iter([(epoch, i) for i in self._indices()])

    def __len__(self) -> int:
        return math.ceil(self.size / self.dist.world_size) if self.size else 0


class IndexedDataset(Dataset):
    """Wraps a dataset of ``(image, label)``; items are ``(image, label, index)``.

    ``dataset[(epoch, index)]`` runs the wrapped ``__getitem__`` with torch, NumPy and
    Python RNGs seeded from ``(seed, epoch, index)``. In the main process (no workers)
    the global torch RNG state is restored afterwards so that model-side randomness
    (dropout, shot sampling) is unaffected; NumPy's and Python's are left seeded (saving
    NumPy's state costs ~0.5 ms per sample, and torch models do not draw from them).
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int, int]:
        epoch, index = key
        s = derive_seed(self.seed, 2, epoch, index)
        in_main = get_worker_info() is None
        saved = torch.get_rng_state() if in_main else None
        try:
            torch.random.default_generator.manual_seed(s)
            np.random.seed(s % 2**32)
            random.seed(s)
            image, label = self.dataset[index][:2]
        finally:
            if saved is not None:
                torch.set_rng_state(saved)
        return image, int(label), index


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_workers: int,
    pin_memory: bool,
    dist: DistInfo | None = None,
) -> tuple[DataLoader, EpochSampler]:
    """A DataLoader over :class:`IndexedDataset` with an :class:`EpochSampler`.

    Workers are persistent (no re-fork every epoch) and prefetch 4 batches each so the
    cores that are not busy with the model keep decoding.
    """
    sampler = EpochSampler(len(dataset), seed, shuffle, dist)  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs.update(persistent_workers=True, prefetch_factor=4)
    loader = DataLoader(
        IndexedDataset(dataset, seed),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        drop_last=False,
        # its own generator: creating an iterator must not draw from the global RNG
        generator=torch.Generator().manual_seed(seed),
        **kwargs,
    )
    return loader, sampler
