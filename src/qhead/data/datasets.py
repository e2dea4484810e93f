"""The dataset registry and :func:`build_datasets`.

Each entry of :data:`DATASETS` is a factory ``(cfg: DataConfig) -> DatasetSplits``.
Users add their own with ``@DATASETS.register("name")``.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset

from qhead.data.loading import ImageFileDataset, TensorImageDataset, is_image_file
from qhead.data.manifest import MANIFEST_NAME, SPLITS, read_manifest
from qhead.data.splits import limit_per_class, stratified_split
from qhead.errors import ConfigError, DataError
from qhead.registry import Registry

if TYPE_CHECKING:
    from qhead.data.config import DataConfig


@dataclass
class DatasetSplits:
    """The train and test datasets of one configuration.

    Attributes:
        train: items ``(float32 [3, S, S] normalised, label int)``; random flip if enabled.
        test: same, without augmentation.
        classes: class names, indexed by label.
        skipped: one message per unreadable file dropped (``skip_bad``), naming the file.
        name: the dataset's registry name.
        root: where the data came from (``None`` for embedded data).
        info: extra facts (e.g. ``{"source": "manifest", "seed": 0}``).
    """

    train: Dataset
    test: Dataset
    classes: list[str]
    skipped: list[str] = field(default_factory=list)
    name: str = ""
    root: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


DATASETS: Registry[Callable[[DataConfig], DatasetSplits]] = Registry("dataset")


@dataclass(frozen=True)
class Record:
    """One image file with its class and split (``split`` ``None``: not yet assigned)."""

    path: str
    label: str
    split: str | None = None
    crop_bottom: int = 0
    sha256: str | None = None


def build_datasets(cfg: DataConfig) -> DatasetSplits:
    """Builds the train/test datasets that ``cfg`` describes.

    Raises:
        UnknownNameError: for an unknown ``cfg.name``.
        DataError: for missing/unreadable data (the message names the file or folder).
    """
    splits = DATASETS.get(cfg.name)(cfg)
    splits.name = splits.name or cfg.name
    return splits


def require_root(cfg: DataConfig) -> Path:
    """``cfg.root`` as a path that exists (``~`` expanded), for datasets that need files.

    Raises:
        ConfigError: ``data.root`` is not set; DataError: it does not exist.
    """
    if not cfg.root:
        raise ConfigError(f"data.root must be set for dataset {cfg.name!r}")
    root = Path(cfg.root).expanduser()
    if not root.exists():
        raise DataError(f"data.root {root} does not exist")
    return root


def assign_splits(records: list[Record], cfg: DataConfig) -> list[Record]:
    """Gives records without a split a seeded stratified one (``cfg.split_seed``)."""
    given = [r.split is not None for r in records]
    if all(given):
        return records
    if any(given):
        raise DataError("some items have a split and others do not; give all or none")
    splits = stratified_split(
        [r.path for r in records], [r.label for r in records],
        seed=cfg.split_seed, test_fraction=cfg.test_fraction,
    )
    return [Record(r.path, r.label, s, r.crop_bottom, r.sha256)
            for r, s in zip(records, splits, strict=True)]


def splits_from_records(
    records: list[Record],
    cfg: DataConfig,
    *,
    classes: list[str] | None = None,
    info: dict[str, Any] | None = None,
) -> DatasetSplits:
    """Turns a list of labelled files into :class:`DatasetSplits` (the common tail).

    Splits unsplit records (seeded, stratified), applies ``max_per_class``, and with
    ``cache``/``skip_bad`` decodes every file once.
    """
    if not records:
        raise DataError(f"dataset {cfg.name!r} at {cfg.root} has no images")
    records = assign_splits(records, cfg)
    classes = classes or sorted({r.label for r in records})
    if len(classes) < 2:
        raise DataError(
            f"dataset {cfg.name!r} at {cfg.root} has {len(classes)} class(es) "
            f"({', '.join(classes)}); at least 2 are needed"
        )
    index = {c: i for i, c in enumerate(classes)}
    datasets: dict[str, ImageFileDataset] = {}
    skipped: list[str] = []
    for split in SPLITS:
        part = sorted((r for r in records if r.split == split), key=lambda r: r.path)
        keep = limit_per_class([index[r.label] for r in part], cfg.max_per_class, cfg.split_seed)
        part = [part[i] for i in keep]
        ds = ImageFileDataset(
            [r.path for r in part], [index[r.label] for r in part], classes,
            image_size=cfg.image_size, train=split == "train", hflip=cfg.hflip,
            normalize=cfg.normalize, crop_bottom=[r.crop_bottom for r in part],
            sha256=[r.sha256 if cfg.verify_sha256 else None for r in part],
        )
        if cfg.cache or cfg.skip_bad:
            skipped += ds.preload(cache=cfg.cache, skip_bad=cfg.skip_bad)
        datasets[split] = ds
    if len(datasets["train"]) == 0:
        raise DataError(f"dataset {cfg.name!r} at {cfg.root} has no training images")
    return DatasetSplits(
        datasets["train"], datasets["test"], list(classes), skipped,
        name=cfg.name, root=str(cfg.root), info=dict(info or {}),
    )


# ---------------------------------------------------------------- digits


@DATASETS.register("digits")
def digits(cfg: DataConfig) -> DatasetSplits:
    """scikit-learn's 1,797 8×8 handwritten digits (10 classes), embedded; upsampled."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # 17 grey levels (0..16) → 0..255
    images = torch.from_numpy(np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8))
    images = images.unsqueeze(1)  # [1797, 1, 8, 8]
    labels = [int(v) for v in bunch.target]
    names = [f"digits[{i}]" for i in range(len(labels))]
    splits = stratified_split(names, [str(v) for v in labels], seed=cfg.split_seed,
                              test_fraction=cfg.test_fraction)
    classes = [str(i) for i in range(10)]
    parts = {}
    for split in SPLITS:
        idx = [i for i, s in enumerate(splits) if s == split]
        keep = limit_per_class([labels[i] for i in idx], cfg.max_per_class, cfg.split_seed)
        idx = [idx[k] for k in keep]
        parts[split] = TensorImageDataset(
            images[idx], [labels[i] for i in idx], classes, image_size=cfg.image_size,
            train=split == "train", hflip=cfg.hflip, normalize=cfg.normalize,
            names=[names[i] for i in idx],
        )
    return DatasetSplits(parts["train"], parts["test"], classes, name="digits",
                         info={"source": "sklearn.datasets.load_digits"})


# ---------------------------------------------------------------- user folders


def _subdirs(folder: Path) -> list[Path]:
    # __MACOSX: resource forks that zips made on macOS carry
    return sorted(
        p for p in folder.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name != "__MACOSX"
    )


def scan_class_folders(folder: Path, *, split: str | None = None) -> list[Record]:
    """Images in ``folder/<class>/`` (recursively under each class folder).

    Files whose suffix is not an image suffix (``.txt``, ``.DS_Store`` …) are ignored.

    Raises:
        DataError: if a class folder holds no image.
    """
    records: list[Record] = []
    for class_dir in _subdirs(folder):
        files = sorted(p for p in class_dir.rglob("*") if p.is_file() and is_image_file(p))
        if not files:
            raise DataError(f"class folder {class_dir} holds no image files")
        records += [Record(str(p), class_dir.name, split) for p in files]
    return records


def scan_imagefolder(root: Path) -> tuple[list[Record], dict[str, Any]]:
    """Records of an image folder: ``root/{train,test}/<class>/`` or ``root/<class>/``
    (also inside single wrapper folders, ``root/wrapper/<class>/``)."""
    if not root.is_dir():
        raise DataError(f"{root} is not a folder")
    # archives often wrap the layout in one folder: look through it
    for _ in range(3):
        subdirs = _subdirs(root)
        if (len(subdirs) != 1 or subdirs[0].name.lower() in ("train", "test")
                or not _subdirs(subdirs[0])
                or any(p.is_file() and is_image_file(p) for p in root.iterdir())):
            break
        root = subdirs[0]
    names = {p.name.lower(): p for p in _subdirs(root)}
    if "train" in names and "test" in names:
        train = scan_class_folders(names["train"], split="train")
        test = scan_class_folders(names["test"], split="test")
        missing = sorted({r.label for r in test} - {r.label for r in train})
        if missing:
            raise DataError(
                f"{names['test']} has class folder(s) {', '.join(missing)} "
                f"that {names['train']} lacks"
            )
        return train + test, {"source": "imagefolder", "split": "given (train/ + test/)"}
    if "train" in names or "test" in names:
        warnings.warn(
            f"{root} has a 'train' or 'test' folder but not both; treating every "
            "sub-folder as a class", stacklevel=2,
        )
    records = scan_class_folders(root)
    if not records:
        raise DataError(f"{root} has no class sub-folders with images")
    return records, {"source": "imagefolder", "split": "seeded stratified"}


@DATASETS.register("imagefolder")
def imagefolder(cfg: DataConfig) -> DatasetSplits:
    """Class sub-folders (``root/<class>/*``), optionally under ``root/train`` + ``root/test``."""
    root = require_root(cfg)
    records, info = scan_imagefolder(root)
    if info["split"] != "given (train/ + test/)":
        info["seed"] = cfg.split_seed
    return splits_from_records(records, cfg, info=info)


def read_csv_records(path: Path) -> list[Record]:
    """Records of a ``path,label[,split]`` CSV (paths relative to the CSV's folder).

    Raises:
        DataError: naming the file and line for a missing column, empty field or
            an unknown split.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read CSV {path}: {error}") from None
    reader = csv.DictReader(text.splitlines())
    fields = [f.strip().lower() for f in reader.fieldnames or []]
    if "path" not in fields or "label" not in fields:
        raise DataError(f"CSV {path} needs a header with columns path,label[,split]")
    reader.fieldnames = fields
    has_split = "split" in fields
    records = []
    for line, row in enumerate(reader, start=2):
        rel, label = (row.get("path") or "").strip(), (row.get("label") or "").strip()
        if not rel or not label:
            raise DataError(f"{path}:{line}: empty path or label")
        split = (row.get("split") or "").strip().lower() if has_split else None
        if has_split and split not in SPLITS:
            raise DataError(f"{path}:{line}: split {split!r}; allowed: train, test")
        file = Path(rel) if Path(rel).is_absolute() else path.parent / rel
        records.append(Record(str(file), label, split))
    return records


@DATASETS.register("csv")
def csv_dataset(cfg: DataConfig) -> DatasetSplits:
    """A CSV file with columns ``path,label[,split]``; paths relative to the CSV."""
    root = require_root(cfg)
    if root.is_dir():
        raise DataError(f"data.root {root} is a folder; dataset 'csv' needs the CSV file")
    return splits_from_records(read_csv_records(root), cfg,
                               info={"source": "csv", "seed": cfg.split_seed})


def manifest_records(location: Path) -> list[Record]:
    """Records of a ``manifest.csv`` (or its folder), paths made absolute."""
    rows = read_manifest(location)
    folder = location if location.is_dir() else location.parent
    return [Record(str(folder / r.path), r.label, r.split, r.crop_bottom, r.sha256 or None)
            for r in rows]


@DATASETS.register("manifest")
def manifest(cfg: DataConfig) -> DatasetSplits:
    """A folder written by ``qhead prepare`` (or any ``manifest.csv``)."""
    root = require_root(cfg)
    return splits_from_records(manifest_records(root), cfg, info={"source": "manifest"})


def is_prepared(root: Path) -> bool:
    """Whether ``root`` is a prepared folder (holds ``manifest.csv``) or a manifest file."""
    return (root / MANIFEST_NAME).is_file() if root.is_dir() else root.name.endswith(".csv")
