"""DDP with 2 gloo CPU processes: sharded evaluation equals single-process evaluation."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from engine_helpers import TINY
from torch import nn
from torch.utils.data import Dataset

from qhead.engine import evaluate
from qhead.engine.distributed import DistInfo, cleanup_distributed, init_distributed
from qhead.engine.loader import make_loader
from qhead.engine.runtime import StepContext
from qhead.engine.trainer import evaluate_model

CLASSES = ["a", "b", "c"]


class Points(Dataset):
    """13 fixed samples (13 is odd: the sampler pads one rank)."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(13, 4, generator=g)
        self.y = torch.randint(0, 3, (13,), generator=g)

    def __len__(self) -> int:
        return 13

    def __getitem__(self, index: int):
        return self.x[index], int(self.y[index])


def _metrics(info: DistInfo) -> dict:
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    loader, _ = make_loader(Points(), batch_size=3, shuffle=False, seed=0, num_workers=0,
                            pin_memory=False, dist=info)
    return evaluate_model(model, loader, StepContext(torch.device("cpu")), CLASSES, info)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    info = init_distributed("cpu")
    try:
        metrics = _metrics(info)
        Path(f"{out}.{rank}").write_text(json.dumps(metrics))
    finally:
        cleanup_distributed(info)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sharded_evaluation_equals_single_process(tmp_path) -> None:
    out = str(tmp_path / "metrics")
    # fork: the children need no re-import (spawn costs ~10 s per process here)
    mp.start_processes(_worker, args=(2, _free_port(), out), nprocs=2, join=True,
                       start_method="fork")
    single = json.loads(json.dumps(_metrics(DistInfo())))
    for rank in range(2):
        sharded = json.loads(Path(f"{out}.{rank}").read_text())
        assert sharded["n"] == 13  # the padding repeat is not counted twice
        assert sharded == single


@pytest.mark.slow
def test_torchrun_training_with_two_gloo_processes(tmp_path) -> None:
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_port", str(_free_port()), "-m", "qhead", "train", *TINY,
        "model.head=quantum", "epochs=2", "data.max_per_class=5", f"out={run}",
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("done: accuracy") == 1  # only rank 0 reports
    final = json.loads((run / "final.json").read_text())
    assert final["world_size"] == 2 and final["n_test"] == 50
    single = evaluate(run / "last.pt", write=False, device="cpu")
    assert final["accuracy"] == pytest.approx(single["accuracy"], abs=1e-12)
    assert final["macro_f1"] == pytest.approx(single["macro_f1"], abs=1e-12)
    assert final["confusion_matrix"] == single["confusion_matrix"]
    assert final["test_loss"] == pytest.approx(single["loss"], rel=1e-5)
