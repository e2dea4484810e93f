"""Sampler sharding/padding, per-sample seeding, de-duplicated gathering."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from qhead.engine.distributed import DistInfo, gather_eval
from qhead.engine.loader import EpochSampler, make_loader


class RandomItems(Dataset):
    """Items drawn from the global torch RNG, like a random augmentation."""

    def __len__(self) -> int:
        return 11

    def __getitem__(self, index: int):
        return torch.rand(2) + index, index % 3


def test_shards_cover_everything_with_padding() -> None:
    shards = [list(EpochSampler(11, 0, True, DistInfo(r, r, 3))) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]
    indices = [i for s in shards for _, i in s]
    assert sorted(set(indices)) == list(range(11))
    assert len(indices) == 12  # one repeat pads 11 to a multiple of 3


def test_shuffle_depends_on_seed_and_epoch_only() -> None:
    a, b = EpochSampler(50, 1, True), EpochSampler(50, 1, True)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b)
    b.set_epoch(4)
    assert [i for _, i in a] != [i for _, i in b]
    assert [i for _, i in EpochSampler(50, 1, False)] == list(range(50))


def _batches(num_workers: int) -> list[torch.Tensor]:
    loader, sampler = make_loader(RandomItems(), batch_size=4, shuffle=True, seed=5,
                                  num_workers=num_workers, pin_memory=False)
    sampler.set_epoch(2)
    return [x for x, _, _ in loader]


def test_augmentation_randomness_is_independent_of_workers_and_global_rng() -> None:
    torch.manual_seed(0)
    before = torch.get_rng_state()
    main = _batches(0)
    assert torch.equal(torch.get_rng_state(), before)  # model-side RNG untouched
    torch.manual_seed(123)
    again = _batches(0)
    worker = _batches(1)
    for x, y, z in zip(main, again, worker, strict=True):
        assert torch.equal(x, y) and torch.equal(x, z)


def test_gather_eval_dedupes_padding_and_orders_by_index() -> None:
    logits = torch.arange(10.0).view(5, 2)
    labels = torch.tensor([0, 1, 0, 1, 0])
    indices = torch.tensor([3, 0, 2, 3, 1])  # index 3 is a padding repeat
    out_logits, out_labels = gather_eval(logits, labels, indices, DistInfo())
    assert out_logits.shape == (4, 2)
    assert out_labels.tolist() == [1, 0, 0, 0]
    assert out_logits[:, 0].tolist() == [2.0, 8.0, 4.0, 0.0]
