"""Preparers for the paper's four datasets (SPEC §6), from the publisher's layout.

A preparer reads a folder in the layout its publisher distributes (``qhead prepare``
also accepts the archive itself, see :mod:`qhead.data.archive`), never downloads,
decodes every image once (corrupt files are errors, or dropped with ``skip_bad``),
hashes the decoded pixels to find exact duplicates, applies the dataset's protocol, and
returns a :class:`Prepared` split. :func:`write_prepared` turns it into a folder::

    OUT/manifest.csv                      path,label,split,sha256,crop_bottom[,cluster]
    OUT/summary.json, OUT/summary.md      counts per class and split, drops, seed
    OUT/images/<path as in the source>    byte-identical copies of the kept images, when
                                          copied (else the manifest points at the source)

Everything written depends only on the source and the seed (sorted listings, seeded
numpy generator, no timestamps), so re-running gives byte-identical files.

Protocols:

* ``busi``: ``Dataset_BUSI_with_GT/{benign,malignant,normal}/*.png``; masks (stem ending
  in ``_mask`` or ``_mask_<n>``) excluded; groups of images with identical decoded pixels
  in more than one class are dropped entirely (a label contradiction: 780 → 778 on the
  published data), other exact duplicates reported and kept; stratified split with
  test size ``round(N · 158 / 778)`` (= 158 of 778, the paper's 620/158).
* ``croatian-fish``: one folder per species (12); stratified split, test size
  ``round(0.2 · N)`` (794 → 635/159).
* ``aircraft737``: FGVC-Aircraft 2013b ``data/``; the eight variants 737-200 … 737-900
  of ``images_variant_{trainval,test}.txt`` (trainval → train, 533; test → test, 267);
  the 20-pixel copyright banner is recorded as ``crop_bottom = 20`` in the manifest and
  cut off at load time (the files stay byte-identical to the publisher's).
* ``apples-or-tomatoes``: ``train/{apples,tomatoes}``, ``test/{apples,tomatoes}`` as given
  (294/97).

Split protocols (``split=``, ``data.split``, ``qhead prepare --split``): ``paper`` (the
above, the default) or, for the datasets the paper splits at random (BUSI, Croatian Fish),
``grouped``: the same exclusions, then clusters of exact and near-duplicate images
(``imagehash.phash``, 64 bits, Hamming distance <= 8: :mod:`qhead.data.duplicates`) are
formed; a cluster holding two classes (the same scan with two labels) is dropped whole and
listed; the others are split whole, stratified by class (same test size rule, seeded),
with each image's cluster id in the manifest's ``cluster`` column. Then no test image
has a near-duplicate in train at that threshold (``qhead audit`` shows 0 leaked images).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qhead.data.config import SPLIT_PROTOCOLS
from qhead.data.datasets import (
    DATASETS,
    Record,
    is_prepared,
    manifest_records,
    require_root,
    scan_class_folders,
    splits_from_records,
)
from qhead.data.duplicates import (
    DEFAULT_HASH_SIZE,
    DEFAULT_THRESHOLD,
    connected_components,
    near_pairs,
    perceptual_hash,
)
from qhead.data.loading import decode_image, is_image_file, pixel_sha256
from qhead.data.manifest import MANIFEST_NAME, ManifestRow, manifest_text
from qhead.data.splits import grouped_stratified_split, stratified_split
from qhead.dataspec import DATASET_SPECS, PAPER_DATASETS, DatasetSpec, spec_names
from qhead.errors import ConfigError, DataError
from qhead.registry import Registry

__all__ = ["PAPER_DATASETS", "PREPARERS", "Prepared", "Preparer", "crop_bottom_for",
           "prepare", "summary_dict", "summary_markdown", "write_prepared"]

IMAGES_DIR = "images"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"

IMAGE_STORAGE = {"copied": f"copied into `{IMAGES_DIR}/`",
                 "in place": "left in the source folder (manifest paths point there)"}

GROUPED_HASH = f"imagehash.phash, {DEFAULT_HASH_SIZE ** 2} bits (hash_size {DEFAULT_HASH_SIZE})"
GROUPED_THRESHOLD = DEFAULT_THRESHOLD
"""The ``grouped`` protocol's near-duplicate rule: Hamming distance <= 8 of 64 bits."""


@dataclass
class Candidate:
    """An image of the publisher's layout (``rel``: its path relative to the source)."""

    path: Path
    rel: str
    label: str
    split: str | None = None


@dataclass
class Item:
    """A kept image with its hashes and split."""

    path: Path
    rel: str
    label: str
    split: str
    sha256: str
    pixels: str
    crop_bottom: int = 0
    cluster: str = ""


@dataclass
class Prepared:
    """The outcome of a preparer: kept items (with their split) and what was dropped.

    Attributes:
        dataset: the preparer's name.
        source: the folder that was read.
        seed: the split seed (recorded even when the split is given).
        items: kept images, sorted by ``rel``.
        dropped: ``{"path", "reason"}`` for every image left out.
        duplicates: exact-duplicate groups (identical decoded pixels) with the action taken.
        protocol: one-line description of the protocol applied.
        expected: the paper's counts, for the ``matches_paper`` check.
        split: the split protocol, ``paper`` or ``grouped``.
        grouping: for ``grouped``: the rule, cluster counts and the cross-class clusters
            dropped (empty for ``paper``).
    """

    dataset: str
    source: Path
    seed: int
    items: list[Item]
    dropped: list[dict[str, str]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    protocol: str = ""
    expected: dict[str, int] = field(default_factory=dict)
    split: str = "paper"
    grouping: dict[str, Any] = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        return sorted({i.label for i in self.items})

    def counts(self) -> dict[str, dict[str, int]]:
        """split -> class -> number of images."""
        out: dict[str, dict[str, int]] = {}
        for split in ("train", "test"):
            c = Counter(i.label for i in self.items if i.split == split)
            out[split] = {label: c.get(label, 0) for label in self.classes}
        return out

    def observed(self) -> dict[str, int]:
        """The quantities the paper states, measured on this preparation."""
        return {
            "total": len(self.items),
            "train": sum(i.split == "train" for i in self.items),
            "test": sum(i.split == "test" for i in self.items),
            "classes": len(self.classes),
        }

    @property
    def matches_paper(self) -> bool:
        observed = self.observed()
        return all(observed[k] == v for k, v in self.expected.items())

    def records(self) -> list[Record]:
        """Records with absolute paths, for :func:`qhead.data.datasets.splits_from_records`."""
        return [Record(str(i.path), i.label, i.split, i.crop_bottom, i.sha256)
                for i in self.items]


class Preparer:
    """Applies a :class:`~qhead.dataspec.DatasetSpec`: reads its layout, knows its protocol.

    Args:
        spec: the dataset's spec (name, classes, layout, protocol, test share …).
    """

    def __init__(self, spec: DatasetSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.protocol = spec.protocol
        self.expected = dict(spec.expected)
        self.crop_bottom = spec.crop_bottom
        self.drop_cross_class_duplicates = spec.drop_cross_class_duplicates

    def scan(self, source: Path) -> list[Candidate]:
        """The images of ``source`` in the spec's layout, with their labels (and given split).

        Raises:
            DataError: for a folder that is not in the layout, naming what was expected.
        """
        return LAYOUT_READERS[self.spec.layout](source, self.spec)

    def test_size(self, n: int) -> int | None:
        """Test-split size for ``n`` kept images; ``None`` when the publisher gives the split."""
        return self.spec.test_size(n)

    def assign(self, items: list[Item], seed: int) -> None:
        """Fills ``item.split`` in place: stratified with :meth:`test_size` test images, or
        (``test_size`` ``None``) the split the publisher gives, kept."""
        n_test = self.test_size(len(items))
        if n_test is not None:
            _stratified(items, seed, n_test=n_test)


PREPARERS: Registry[Preparer] = Registry("preparer")


def _rel(path: Path, source: Path) -> str:
    return path.relative_to(source).as_posix()


def _unwrap(folder: Path, accept) -> Path | None:
    """``folder`` or a descendant through single-sub-folder wrappers that ``accept``s."""
    current = folder
    for _ in range(4):
        if accept(current):
            return current
        subdirs = [p for p in current.iterdir()
                   if p.is_dir() and not p.name.startswith(".") and p.name != "__MACOSX"]
        if len(subdirs) != 1:
            return None
        current = subdirs[0]
    return None


def _stratified(items: list[Item], seed: int, *, n_test: int) -> None:
    splits = stratified_split([i.rel for i in items], [i.label for i in items],
                              seed=seed, n_test=n_test)
    for item, split in zip(items, splits, strict=True):
        item.split = split


# ---------------------------------------------------------------- layout readers
# One per qhead.dataspec.LAYOUTS entry: (source folder, spec) -> candidates.

BUSI_CLASSES: tuple[str, ...] = tuple(DATASET_SPECS.get("busi").classes or ())
_MASK = re.compile(r"_mask(_\d+)?$", re.IGNORECASE)


def is_busi_mask(path: Path) -> bool:
    """BUSI's ground-truth masks: ``name_mask.png``, ``name_mask_1.png``, …"""
    return bool(_MASK.search(path.stem))


def _read_busi(source: Path, spec: DatasetSpec) -> list[Candidate]:
    """``Dataset_BUSI_with_GT/<class>/*.png``, masks left out."""
    classes = spec.classes or ()

    def accept(p: Path) -> bool:
        return all((p / c).is_dir() for c in classes)

    root = _unwrap(source / "Dataset_BUSI_with_GT", accept) if (
        source / "Dataset_BUSI_with_GT").is_dir() else _unwrap(source, accept)
    if root is None:
        raise DataError(
            f"{source} is not the {spec.title} layout: expected "
            f"Dataset_BUSI_with_GT/{{{','.join(classes)}}}/*.png"
        )
    out = []
    for label in classes:
        for p in sorted((root / label).iterdir()):
            if p.is_file() and is_image_file(p) and not is_busi_mask(p):
                out.append(Candidate(p, _rel(p, source), label))
    return out


def _read_class_folders(source: Path, spec: DatasetSpec) -> list[Candidate]:
    """One folder per class (through wrapper folders)."""

    def accept(p: Path) -> bool:
        subdirs = [d for d in p.iterdir() if d.is_dir() and d.name != "__MACOSX"
                   and not d.name.startswith(".")]
        return len(subdirs) >= 2

    root = _unwrap(source, accept)
    if root is None:
        raise DataError(f"{source} is not the {spec.title} layout: expected one folder per "
                        "class")
    return [Candidate(Path(r.path), _rel(Path(r.path), source), r.label)
            for r in scan_class_folders(root)]


def _read_train_test_folders(source: Path, spec: DatasetSpec) -> list[Candidate]:
    """``train/<class>/`` and ``test/<class>/``: the given split."""

    def accept(p: Path) -> bool:
        return (p / "train").is_dir() and (p / "test").is_dir()

    root = _unwrap(source, accept)
    classes = "{" + ",".join(spec.classes) + "}" if spec.classes else "<class>"
    if root is None:
        raise DataError(f"{source} is not the {spec.title} layout: expected "
                        f"train/{classes}/ and test/{classes}/")
    out = []
    for split in ("train", "test"):
        for r in scan_class_folders(root / split, split=split):
            out.append(Candidate(Path(r.path), _rel(Path(r.path), source), r.label, split))
    train_classes = {c.label for c in out if c.split == "train"}
    extra = sorted({c.label for c in out if c.split == "test"} - train_classes)
    if extra:
        raise DataError(f"{root / 'test'} has class folder(s) {', '.join(extra)} "
                        f"that {root / 'train'} lacks")
    return out


AIRCRAFT_737: tuple[str, ...] = tuple(DATASET_SPECS.get("aircraft737").classes or ())


def _read_variant_list(path: Path) -> list[tuple[str, str]]:
    """Lines ``ID VARIANT NAME`` (the variant may contain spaces) → (id, variant)."""
    if not path.is_file():
        raise DataError(f"FGVC-Aircraft list {path} is missing")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        image_id, _, variant = line.strip().partition(" ")
        if not variant.strip():
            raise DataError(f"{path}:{n}: expected 'IMAGE_ID VARIANT', got {line!r}")
        out.append((image_id, variant.strip()))
    return out


def _read_fgvc_aircraft(source: Path, spec: DatasetSpec) -> list[Candidate]:
    """FGVC-Aircraft 2013b ``data/``: the spec's variants, trainval → train, test → test."""
    variants_kept = spec.classes or ()

    def accept(p: Path) -> bool:
        return (p / "data" / "images_variant_trainval.txt").is_file()

    root = _unwrap(source, accept)
    if root is None:
        raise DataError(
            f"{source} is not the FGVC-Aircraft 2013b layout: expected data/images/, "
            "data/images_variant_trainval.txt, data/images_variant_test.txt, "
            "data/variants.txt"
        )
    data = root / "data"
    variants_file = data / "variants.txt"
    if not variants_file.is_file():
        raise DataError(f"FGVC-Aircraft file {variants_file} is missing")
    variants = {v.strip() for v in variants_file.read_text(encoding="utf-8").splitlines()}
    absent = [v for v in variants_kept if v not in variants]
    if absent:
        raise DataError(f"{variants_file} lacks the variant(s) {', '.join(absent)}")
    out: list[Candidate] = []
    seen: dict[str, str] = {}
    for split, list_name in (("train", "images_variant_trainval.txt"),
                             ("test", "images_variant_test.txt")):
        for image_id, variant in _read_variant_list(data / list_name):
            if variant not in variants_kept:
                continue
            if image_id in seen:
                raise DataError(
                    f"FGVC-Aircraft image {image_id} is listed in both {seen[image_id]} "
                    f"and {list_name}"
                )
            seen[image_id] = list_name
            path = data / "images" / f"{image_id}.jpg"
            out.append(Candidate(path, _rel(path, source), variant, split))
    if not out:
        raise DataError(f"{data} lists no {spec.title} images")
    return sorted(out, key=lambda c: c.rel)


LAYOUT_READERS: dict[str, Callable[[Path, DatasetSpec], list[Candidate]]] = {
    "busi": _read_busi,
    "class-folders": _read_class_folders,
    "train-test-folders": _read_train_test_folders,
    "fgvc-aircraft": _read_fgvc_aircraft,
}
"""A reader per :data:`qhead.dataspec.LAYOUTS` entry (tested to cover them all)."""

for _name in spec_names():
    PREPARERS.add(_name, Preparer(DATASET_SPECS.get(_name)),
                  help=DATASET_SPECS.describe(_name))


# ---------------------------------------------------------------- the common flow


def supports_grouped(name: str) -> bool:
    """Whether paper dataset ``name`` has a random split that ``grouped`` can replace."""
    return name in PREPARERS and PREPARERS.get(name).test_size(100) is not None


def prepare(name: str, source: str | Path, *, seed: int = 0, skip_bad: bool = False,
            split: str = "paper") -> Prepared:
    """Applies the protocol of paper dataset ``name`` to the folder ``source``.

    Args:
        name: ``busi``, ``croatian-fish``, ``aircraft737`` or ``apples-or-tomatoes``.
        source: a folder in the publisher's layout (an archive must be extracted first:
            :func:`qhead.data.archive.source_folder`).
        seed: split seed (for the datasets split at random).
        skip_bad: drop unreadable images (recorded in ``dropped``) instead of raising.
        split: ``paper`` (the paper's protocol) or ``grouped`` (near-duplicate clusters
            kept inside one split, cross-class clusters dropped; see the module doc).

    Raises:
        UnknownNameError: for an unknown ``name``.
        ConfigError: for an unknown ``split``, or ``grouped`` on a dataset whose split is
            given by its publisher.
        DataError: for a wrong layout or (without ``skip_bad``) an unreadable image.
    """
    preparer = PREPARERS.get(name)
    if split not in SPLIT_PROTOCOLS:
        raise ConfigError(f"split={split!r}; allowed: {', '.join(SPLIT_PROTOCOLS)}")
    grouped = split == "grouped"
    if grouped and not supports_grouped(name):
        raise ConfigError(f"split='grouped' needs a dataset that the paper splits at random "
                          f"({', '.join(n for n in PREPARERS.names() if supports_grouped(n))});"
                          f" {name}'s split is given by its publisher")
    source = Path(source)
    if not source.is_dir():
        raise DataError(f"source {source} is not a folder")
    candidates = sorted(preparer.scan(source), key=lambda c: c.rel)
    dropped: list[dict[str, str]] = []
    items: list[Item] = []
    phashes: dict[str, Any] = {}
    for cand in candidates:
        try:
            data = cand.path.read_bytes()
        except OSError as error:
            message = f"cannot read image file {cand.rel}: {error.strerror or error}"
            if not skip_bad:
                raise DataError(message) from None
            dropped.append({"path": cand.rel, "reason": message})
            continue
        try:
            img = decode_image(data, name=cand.rel, crop_bottom=preparer.crop_bottom)
        except DataError as error:
            if not skip_bad:
                raise
            dropped.append({"path": cand.rel, "reason": f"unreadable: {error}"})
            continue
        items.append(Item(cand.path, cand.rel, cand.label, cand.split or "",
                          hashlib.sha256(data).hexdigest(), pixel_sha256(img),
                          preparer.crop_bottom))
        if grouped:
            phashes[cand.rel] = perceptual_hash(img)
    groups: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        groups[item.pixels].append(item)
    duplicates: list[dict[str, Any]] = []
    drop: set[str] = set()
    for group in sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0].rel):
        labels = sorted({i.label for i in group})
        cross = len(labels) > 1
        action = "dropped all" if cross and preparer.drop_cross_class_duplicates else "kept"
        duplicates.append({"paths": [i.rel for i in group], "labels": [i.label for i in group],
                           "cross_class": cross, "action": action})
        if action == "dropped all":
            for item in group:
                others = ", ".join(f"{o.rel} ({o.label})" for o in group if o is not item)
                drop.add(item.rel)
                dropped.append({"path": item.rel, "reason": "identical decoded pixels in "
                                f"another class: {others}"})
    items = [i for i in items if i.rel not in drop]
    grouping: dict[str, Any] = {}
    protocol = preparer.protocol
    if grouped:
        items, grouping = _grouped_split(items, phashes, seed, preparer, dropped)
        protocol += (f"; split 'grouped': clusters of exact and near-duplicate images "
                     f"({GROUPED_HASH}, Hamming distance <= {GROUPED_THRESHOLD}) kept in one "
                     "split, clusters holding two classes dropped, clusters stratified by class")
    if not items:
        raise DataError(f"no images left in {source} after preparation")
    if not grouped:
        preparer.assign(items, seed)
    return Prepared(name, source, seed, items, sorted(dropped, key=lambda d: d["path"]),
                    duplicates, protocol, dict(preparer.expected), split, grouping)


def _grouped_split(items: list[Item], phashes: dict[str, Any], seed: int, preparer: Preparer,
                   dropped: list[dict[str, str]]) -> tuple[list[Item], dict[str, Any]]:
    """Clusters ``items`` (sorted by rel), drops cross-class clusters (appending to
    ``dropped``), splits the rest cluster-wise; returns the kept items and the grouping
    facts for the summary."""
    bits = np.stack([phashes[i.rel] for i in items]) if items else np.zeros((0, 64), bool)
    pairs = near_pairs(bits, GROUPED_THRESHOLD)
    by_pixels: dict[str, list[int]] = defaultdict(list)
    for k, item in enumerate(items):
        by_pixels[item.pixels].append(k)
    exact = [(g[0], k) for g in by_pixels.values() for k in g[1:]]
    roots = connected_components(len(items), [(i, j) for i, j, _ in pairs] + exact)
    # ids by the cluster's first path: independent of the seed, stable across re-runs
    number = {root: n for n, root in enumerate(sorted(set(roots)), start=1)}
    width = len(str(len(number)))
    members: dict[int, list[int]] = defaultdict(list)
    for k, root in enumerate(roots):
        items[k].cluster = f"c{number[root]:0{width}d}"
        members[root].append(k)
    cross = []
    drop: set[int] = set()
    for root in sorted(members):
        idx = members[root]
        labels = sorted({items[k].label for k in idx})
        if len(labels) < 2:
            continue
        inside = set(idx)
        cluster = items[idx[0]].cluster
        cross.append({
            "cluster": cluster,
            "images": [{"path": items[k].rel, "label": items[k].label} for k in idx],
            "pairs": [{"a": items[i].rel, "b": items[j].rel, "distance": d}
                      for i, j, d in pairs if i in inside and j in inside],
        })
        for k in idx:
            drop.add(k)
            others = ", ".join(f"{items[o].rel} ({items[o].label})" for o in idx if o != k)
            dropped.append({"path": items[k].rel, "reason": (
                f"grouped split: near-duplicate cluster {cluster} holds {' and '.join(labels)}"
                f" (same scan, two labels): {others}")})
    kept = [item for k, item in enumerate(items) if k not in drop]
    n_test = preparer.test_size(len(kept))
    assert n_test is not None  # supports_grouped was checked by the caller
    splits = grouped_stratified_split([i.rel for i in kept], [i.label for i in kept],
                                      [i.cluster for i in kept], seed=seed, n_test=n_test)
    for item, part in zip(kept, splits, strict=True):
        item.split = part
    sizes = Counter(i.cluster for i in kept)
    grouping = {
        "hash": GROUPED_HASH,
        "threshold": GROUPED_THRESHOLD,
        "clusters": len(sizes),
        "multi_image_clusters": sum(n > 1 for n in sizes.values()),
        "images_in_multi_image_clusters": sum(n for n in sizes.values() if n > 1),
        "largest_cluster": max(sizes.values(), default=0),
        "target_test_size": n_test,
        "cross_class_clusters": cross,
        "dropped_cross_class_images": len(drop),
    }
    return kept, grouping


def summary_dict(prepared: Prepared, source_label: str | None = None) -> dict[str, Any]:
    """The content of ``summary.json`` (deterministic: no timestamps)."""
    return {
        "dataset": prepared.dataset,
        "source": source_label or str(prepared.source),
        "split": prepared.split,
        "protocol": prepared.protocol,
        "seed": prepared.seed,
        "classes": prepared.classes,
        "counts": prepared.counts(),
        "observed": prepared.observed(),
        "paper": prepared.expected,
        "matches_paper": prepared.matches_paper,
        "crop_bottom": PREPARERS.get(prepared.dataset).crop_bottom,
        "dropped": prepared.dropped,
        "exact_duplicates": prepared.duplicates,
        **({"grouping": prepared.grouping} if prepared.grouping else {}),
        "manifest": MANIFEST_NAME,
    }


def summary_markdown(summary: dict[str, Any]) -> str:
    """``summary.md``: the same facts as ``summary.json``, for people."""
    counts = summary["counts"]
    lines = [
        f"# {summary['dataset']}: prepared split",
        "",
        f"- source: `{summary['source']}`",
        f"- split protocol: {summary.get('split', 'paper')}",
        f"- images: {IMAGE_STORAGE.get(summary.get('images', ''), 'see manifest.csv')}",
        f"- protocol: {summary['protocol']}",
        f"- seed: {summary['seed']}",
        f"- paper counts: {summary['paper']}; observed: {summary['observed']}; "
        f"match: {'yes' if summary['matches_paper'] else 'NO'}",
    ]
    if summary["crop_bottom"]:
        lines.append(f"- bottom {summary['crop_bottom']} px cropped at load time "
                     "(`crop_bottom` column)")
    lines += ["", "| class | train | test | total |", "|---|---:|---:|---:|"]
    for label in summary["classes"]:
        tr, te = counts["train"][label], counts["test"][label]
        lines.append(f"| {label} | {tr} | {te} | {tr + te} |")
    tr, te = sum(counts["train"].values()), sum(counts["test"].values())
    lines += [f"| **total** | {tr} | {te} | {tr + te} |", ""]
    lines.append(f"## Dropped ({len(summary['dropped'])})")
    lines.append("")
    lines += [f"- `{d['path']}`: {d['reason']}" for d in summary["dropped"]] or ["none"]
    lines += ["", f"## Exact duplicates (decoded pixels) ({len(summary['exact_duplicates'])})", ""]
    for group in summary["exact_duplicates"]:
        members = ", ".join(f"`{p}` ({c})" for p, c in zip(group["paths"], group["labels"],
                                                             strict=True))
        lines.append(f"- {members}: {group['action']}")
    if not summary["exact_duplicates"]:
        lines.append("none")
    grouping = summary.get("grouping")
    if grouping:
        lines += ["", "## Grouped split", "",
                  f"- near-duplicate rule: {grouping['hash']}, Hamming distance <= "
                  f"{grouping['threshold']}; exact duplicates (decoded pixels) join too",
                  f"- clusters: {grouping['clusters']} ({grouping['multi_image_clusters']} "
                  f"with more than one image, holding "
                  f"{grouping['images_in_multi_image_clusters']} images; largest "
                  f"{grouping['largest_cluster']}); each kept whole in one split",
                  f"- target test size {grouping['target_test_size']}",
                  f"- cross-class clusters dropped: {len(grouping['cross_class_clusters'])} "
                  f"({grouping['dropped_cross_class_images']} images)", ""]
        for cluster in grouping["cross_class_clusters"]:
            members = ", ".join(f"`{m['path']}` ({m['label']})" for m in cluster["images"])
            lines.append(f"- {cluster['cluster']}: {members}")
    return "\n".join(lines) + "\n"


def _path_from(out: Path, image: Path) -> str:
    """How ``out``'s manifest names an image left in place: relative to ``out`` (so both
    can move together) when they share a folder below the filesystem root, else absolute."""
    image, out = image.resolve(), out.resolve()
    if Path(os.path.commonpath([image, out])) == Path(image.anchor):
        return image.as_posix()
    return Path(os.path.relpath(image, out)).as_posix()


def write_prepared(prepared: Prepared, out: str | Path, *, source_label: str | None = None,
                   copy_images: bool = True) -> Path:
    """Writes ``images/``, ``manifest.csv``, ``summary.json`` and ``summary.md`` into ``out``.

    Args:
        prepared: the result of :func:`prepare`.
        out: the output folder; created if needed. If it exists it must be empty or
            hold an earlier preparation (its ``images/`` is replaced).
        source_label: how to name the source in the summary (e.g. the archive's path).
        copy_images: copy the kept images into ``out/images`` (needed when the source
            is a temporary extraction); otherwise nothing is copied and the manifest's
            paths point to the source files in place: relative to ``out`` when both
            lie under a common folder below the filesystem root, else absolute.
            ``summary.json`` records which (``"images": "copied"`` or ``"in place"``).

    Returns:
        the path of ``manifest.csv``.

    Raises:
        DataError: if ``out`` is a non-empty folder that is not a preparation.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST_NAME).is_file():
        raise DataError(f"--out {out} is a non-empty folder that was not written by "
                        "`qhead prepare`; choose an empty or new folder")
    if out.resolve() == prepared.source.resolve() or prepared.source.resolve().is_relative_to(
            out.resolve()):
        raise DataError(f"--out {out} must not contain the source {prepared.source}")
    out.mkdir(parents=True, exist_ok=True)
    images = out / IMAGES_DIR
    if images.exists():
        shutil.rmtree(images)
    rows = []
    for item in prepared.items:
        if copy_images:
            target = images / item.rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(item.path, target)
            rel = f"{IMAGES_DIR}/{item.rel}"
        else:
            rel = _path_from(out, Path(item.path))
        rows.append(ManifestRow(rel, item.label, item.split, item.sha256, item.crop_bottom,
                                item.cluster))
    manifest = out / MANIFEST_NAME
    manifest.write_bytes(manifest_text(rows).encode("utf-8"))
    summary = summary_dict(prepared, source_label)
    summary["images"] = "copied" if copy_images else "in place"
    (out / SUMMARY_JSON).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n",
                                    encoding="utf-8")
    (out / SUMMARY_MD).write_text(summary_markdown(summary), encoding="utf-8")
    return manifest


# ---------------------------------------------------------------- registry entries


def _paper_dataset(name: str):
    def build(cfg) -> Any:
        root = require_root(cfg)
        if is_prepared(root):
            summary_file = (root if root.is_dir() else root.parent) / SUMMARY_JSON
            summary = (json.loads(summary_file.read_text(encoding="utf-8"))
                       if summary_file.is_file() else {})
            recorded = summary.get("dataset")
            if recorded and recorded != name:
                raise DataError(f"{root} was prepared as {recorded!r}, not {name!r}")
            # preparations written before split protocols existed used the paper's
            recorded_split = summary.get("split", "paper")
            if summary and recorded_split != cfg.split:
                raise DataError(
                    f"{root} was prepared with split protocol {recorded_split!r}, but "
                    f"data.split={cfg.split!r}; set data.split={recorded_split} or prepare "
                    f"with `qhead prepare {name} SOURCE --split {cfg.split}`")
            return splits_from_records(manifest_records(root), cfg,
                                       info={"source": "manifest", "dataset": name,
                                             "split": recorded_split})
        prepared = prepare(name, root, seed=cfg.split_seed, skip_bad=cfg.skip_bad,
                           split=cfg.split)
        splits = splits_from_records(
            prepared.records(), cfg,
            info={"source": "raw (prepared in memory)", "seed": cfg.split_seed,
                  "split": cfg.split, "dropped": prepared.dropped,
                  "matches_paper": prepared.matches_paper,
                  **({"grouping": {k: v for k, v in prepared.grouping.items()
                                   if k != "cross_class_clusters"}}
                     if prepared.grouping else {})},
        )
        splits.skipped = [d["reason"] for d in prepared.dropped
                          if d["reason"].startswith(("unreadable", "cannot read"))
                          ] + splits.skipped
        return splits

    build.__doc__ = (f"{PREPARERS.describe(name)} (root: raw layout or a `qhead prepare` "
                     "folder)")
    return build


def crop_bottom_for(dataset: str) -> int:
    """Rows a dataset's images lose at the bottom (20 for ``aircraft737``'s banner, else 0).

    For ``qhead predict`` on raw files of that dataset:
    ``load_image(path, size, normalize, crop_bottom=crop_bottom_for(cfg.data.name))``.
    """
    return PREPARERS.get(dataset).crop_bottom if dataset in PREPARERS else 0
for _name in spec_names():
    DATASETS.add(_name, _paper_dataset(_name))
