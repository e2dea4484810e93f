"""DistributedDataParallel plumbing: process group, ranks, gathering evaluation outputs.

``torchrun --nproc_per_node N -m qhead train ...`` sets ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE``; :func:`init_distributed` then joins the group (NCCL on CUDA, gloo on
CPU). Without them everything runs as a single process (rank 0 of 1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = [
    "DistInfo",
    "all_reduce_sum",
    "broadcast_buffers",
    "cleanup_distributed",
    "gather_eval",
    "init_distributed",
]


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    """Joins the process group when launched by torchrun (``WORLD_SIZE`` > 1).

    Args:
        device_type: ``"cuda"`` selects NCCL, anything else gloo.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world)


def cleanup_distributed(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def broadcast_buffers(model: torch.nn.Module, info: DistInfo) -> None:
    """Copies rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP broadcasts buffers at the start of each training forward, but the last forward
    of an epoch leaves each rank with statistics of its own batch; evaluating with them
    would make the sharded metrics differ from those of the saved (rank 0) model.
    """
    if not info.enabled:
        return
    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum of ``values`` over ranks (returned; the input is not modified)."""
    if not info.enabled:
        return values
    out = values.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def gather_eval(
    logits: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor, info: DistInfo
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gathers sharded evaluation outputs and removes the sampler's padding.

    A distributed sampler pads the dataset to a multiple of the world size by repeating
    samples; each sample's dataset index travels with its outputs, so duplicates are
    dropped and the result is in dataset order, exactly what one process would compute.

    Args:
        logits: ``[n_rank, C]`` this rank's logits (any device).
        labels: ``[n_rank]``.
        indices: ``[n_rank]`` dataset indices of the rows.
        info: the process group info.

    Returns:
        ``(logits [N, C], labels [N])`` on CPU over the N distinct samples, by index.
    """
    logits, labels, indices = logits.cpu().float(), labels.cpu().long(), indices.cpu().long()
    if info.enabled:
        gathered: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None] = [
            None
        ] * info.world_size
        # object gather: ranks may hold different row counts (a last partial batch)
        dist.all_gather_object(gathered, (logits, labels, indices))
        logits = torch.cat([g[0] for g in gathered if g is not None])
        labels = torch.cat([g[1] for g in gathered if g is not None])
        indices = torch.cat([g[2] for g in gathered if g is not None])
    order = torch.argsort(indices, stable=True)
    indices, logits, labels = indices[order], logits[order], labels[order]
    keep = torch.ones_like(indices, dtype=torch.bool)
    keep[1:] = indices[1:] != indices[:-1]
    return logits[keep], labels[keep]
