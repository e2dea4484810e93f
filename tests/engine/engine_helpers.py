"""Shared settings for the engine tests: a tiny model on a few digits, one thread."""

from __future__ import annotations

from pathlib import Path

from qhead.engine import TrainConfig, load_config

TINY = [
    "data.name=digits",
    "model.backbone=small_cnn",
    "model.backbone_options.channels=[4,8,8]",
    "image_size=16",
    "data.max_per_class=4",
    "data.num_workers=0",
    "batch_size=8",
    "threads=1",
    "tensorboard=false",
    "progress=false",
    "plots=false",
]


def tiny_config(out: Path, *extra: str, head: str = "classical") -> TrainConfig:
    """small_cnn (4-8-8 channels) at 16 px on 40 + 40 digits, 2 epochs by default."""
    return load_config(overrides=[*TINY, f"model.head={head}", "epochs=2", f"out={out}", *extra])
