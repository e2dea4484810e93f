"""Helpers shared by the data tests: small real image files written with PIL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_image(path: Path, seed: int, size: tuple[int, int] = (12, 10), fmt: str = "PNG",
                mode: str = "RGB") -> Path:
    """Writes a random image (distinct per seed) and returns its path."""
    rng = np.random.default_rng(seed)
    w, h = size
    arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    img = Image.fromarray(arr, "RGB")
    if mode != "RGB":
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt)
    return path


@pytest.fixture
def make_image():
    return write_image
