"""Helpers shared by the data tests: small real image files written with PIL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def smooth_array(seed: int, size: tuple[int, int] = (32, 24)) -> np.ndarray:
    """A smooth random RGB picture ``uint8 [H, W, 3]`` (distinct perceptual hash per seed)."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8), "RGB")
    return np.asarray(small.resize(size, Image.Resampling.BICUBIC))


def write_image(path: Path, seed: int, size: tuple[int, int] = (32, 24), fmt: str | None = None,
                mode: str = "RGB", noise: int = 0) -> Path:
    """Writes a smooth random image (distinct per seed; ``noise`` adds ±noise) to ``path``."""
    arr = smooth_array(seed, size).astype(np.int16)
    if noise:
        arr += np.random.default_rng(seed + 1000).integers(-noise, noise + 1, size=arr.shape,
                                                           dtype=np.int16)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    if mode != "RGB":
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt)
    return path


@pytest.fixture
def make_image():
    return write_image
