"""Datasets: the registry, the paper's preparers, image loading and the data audit.

Public API::

    from qhead.data import DataConfig, build_datasets, DATASETS, load_image

    splits = build_datasets(DataConfig(name="digits", image_size=32))
    x, y = splits.train[0]          # float32 [3, 32, 32] (ImageNet-normalised), int
    splits.classes                  # ["0", ..., "9"]

See ``docs/data.md`` for the layouts, protocols and manifest format.
"""

from qhead.data.config import DataConfig
from qhead.data.datasets import DATASETS, DatasetSplits, Record, build_datasets
from qhead.data.loading import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageFileDataset,
    TensorImageDataset,
    decode_image,
    load_image,
)
from qhead.data.manifest import ManifestRow, read_manifest
from qhead.data.prepare import (
    PAPER_DATASETS,
    PREPARERS,
    Prepared,
    crop_bottom_for,
    prepare,
    write_prepared,
)

__all__ = [
    "DATASETS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PAPER_DATASETS",
    "PREPARERS",
    "DataConfig",
    "DatasetSplits",
    "ImageFileDataset",
    "ManifestRow",
    "Prepared",
    "Record",
    "TensorImageDataset",
    "build_datasets",
    "crop_bottom_for",
    "decode_image",
    "load_image",
    "prepare",
    "read_manifest",
    "write_prepared",
]
