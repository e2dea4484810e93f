"""Preparers for the paper's four datasets (SPEC §6), from the publisher's layout.

A preparer reads a folder in the layout its publisher distributes (``qhead prepare``
also accepts the archive itself, see :mod:`qhead.data.archive`), never downloads,
decodes every image once (corrupt files are errors, or dropped with ``skip_bad``),
hashes the decoded pixels to find exact duplicates, applies the dataset's protocol, and
returns a :class:`Prepared` split. :func:`write_prepared` turns it into a folder::

    OUT/images/<path as in the source>    byte-identical copies of the kept images
    OUT/manifest.csv                      path,label,split,sha256,crop_bottom
    OUT/summary.json, OUT/summary.md      counts per class and split, drops, seed

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
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qhead.data.datasets import (
    DATASETS,
    Record,
    _require_root,
    is_prepared,
    manifest_records,
    scan_class_folders,
    splits_from_records,
)
from qhead.data.loading import decode_image, is_image_file, pixel_sha256
from qhead.data.manifest import MANIFEST_NAME, ManifestRow, manifest_text
from qhead.data.splits import stratified_split
from qhead.errors import DataError
from qhead.registry import Registry

IMAGES_DIR = "images"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"


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
    """

    dataset: str
    source: Path
    seed: int
    items: list[Item]
    dropped: list[dict[str, str]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    protocol: str = ""
    expected: dict[str, int] = field(default_factory=dict)

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
    """Base class: subclasses say where the images are and which protocol applies."""

    name: str = ""
    protocol: str = ""
    expected: dict[str, int] = {}  # noqa: RUF012 (read-only class constant)
    crop_bottom: int = 0
    drop_cross_class_duplicates: bool = False

    def scan(self, source: Path) -> list[Candidate]:  # pragma: no cover - abstract
        raise NotImplementedError

    def assign(self, items: list[Item], seed: int) -> None:
        """Fills ``item.split`` in place (default: keep the given split)."""


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


# ---------------------------------------------------------------- BUSI

BUSI_CLASSES: tuple[str, ...] = ("benign", "malignant", "normal")
_MASK = re.compile(r"_mask(_\d+)?$", re.IGNORECASE)


def is_busi_mask(path: Path) -> bool:
    """BUSI's ground-truth masks: ``name_mask.png``, ``name_mask_1.png``, …"""
    return bool(_MASK.search(path.stem))


class BusiPreparer(Preparer):
    """BUSI: masks out, cross-class duplicates dropped, stratified 620/158."""

    name = "busi"
    protocol = ("Dataset_BUSI_with_GT/{benign,malignant,normal}; masks excluded; images with "
                "identical decoded pixels in several classes dropped; stratified split, "
                "test size round(N*158/778)")
    expected = {"total": 778, "train": 620, "test": 158, "classes": 3}  # noqa: RUF012
    drop_cross_class_duplicates = True

    def scan(self, source: Path) -> list[Candidate]:
        def accept(p: Path) -> bool:
            return all((p / c).is_dir() for c in BUSI_CLASSES)

        root = _unwrap(source / "Dataset_BUSI_with_GT", accept) if (
            source / "Dataset_BUSI_with_GT").is_dir() else _unwrap(source, accept)
        if root is None:
            raise DataError(
                f"{source} is not the BUSI layout: expected "
                "Dataset_BUSI_with_GT/{benign,malignant,normal}/*.png"
            )
        out = []
        for label in BUSI_CLASSES:
            for p in sorted((root / label).iterdir()):
                if p.is_file() and is_image_file(p) and not is_busi_mask(p):
                    out.append(Candidate(p, _rel(p, source), label))
        return out

    def assign(self, items: list[Item], seed: int) -> None:
        _stratified(items, seed, n_test=int(len(items) * 158 / 778 + 0.5))


# ---------------------------------------------------------------- Croatian fish


class CroatianFishPreparer(Preparer):
    """Croatian Fish: species folders, stratified 80/20."""

    name = "croatian-fish"
    protocol = "one folder per species; stratified split, test size round(0.2*N)"
    expected = {"total": 794, "classes": 12}  # noqa: RUF012

    def scan(self, source: Path) -> list[Candidate]:
        def accept(p: Path) -> bool:
            subdirs = [d for d in p.iterdir() if d.is_dir() and d.name != "__MACOSX"
                       and not d.name.startswith(".")]
            return len(subdirs) >= 2

        root = _unwrap(source, accept)
        if root is None:
            raise DataError(
                f"{source} is not the Croatian Fish layout: expected one folder per species"
            )
        return [Candidate(Path(r.path), _rel(Path(r.path), source), r.label)
                for r in scan_class_folders(root)]

    def assign(self, items: list[Item], seed: int) -> None:
        _stratified(items, seed, n_test=int(0.2 * len(items) + 0.5))


# ---------------------------------------------------------------- FGVC-Aircraft 737

AIRCRAFT_737: tuple[str, ...] = tuple(f"737-{v}00" for v in range(2, 10))


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


class Aircraft737Preparer(Preparer):
    """FGVC-Aircraft 2013b, Boeing 737-200 … 737-900, official split, banner cropped."""

    name = "aircraft737"
    protocol = ("FGVC-Aircraft 2013b variants 737-200..737-900; images_variant_trainval.txt "
                "-> train, images_variant_test.txt -> test; bottom 20 px banner cropped")
    expected = {"train": 533, "test": 267, "classes": 8}  # noqa: RUF012
    crop_bottom = 20

    def scan(self, source: Path) -> list[Candidate]:
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
        absent = [v for v in AIRCRAFT_737 if v not in variants]
        if absent:
            raise DataError(f"{variants_file} lacks the variant(s) {', '.join(absent)}")
        out: list[Candidate] = []
        seen: dict[str, str] = {}
        for split, list_name in (("train", "images_variant_trainval.txt"),
                                 ("test", "images_variant_test.txt")):
            for image_id, variant in _read_variant_list(data / list_name):
                if variant not in AIRCRAFT_737:
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
            raise DataError(f"{data} lists no Boeing 737 images")
        return sorted(out, key=lambda c: c.rel)


# ---------------------------------------------------------------- Apples or tomatoes


class ApplesOrTomatoesPreparer(Preparer):
    """Apples or Tomatoes (Kaggle): the given train/test split."""

    name = "apples-or-tomatoes"
    protocol = "train/{apples,tomatoes} -> train, test/{apples,tomatoes} -> test, as given"
    expected = {"train": 294, "test": 97, "classes": 2}  # noqa: RUF012

    def scan(self, source: Path) -> list[Candidate]:
        def accept(p: Path) -> bool:
            return (p / "train").is_dir() and (p / "test").is_dir()

        root = _unwrap(source, accept)
        if root is None:
            raise DataError(
                f"{source} is not the Apples or Tomatoes layout: expected "
                "train/{apples,tomatoes}/ and test/{apples,tomatoes}/"
            )
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


for _cls in (BusiPreparer, CroatianFishPreparer, Aircraft737Preparer, ApplesOrTomatoesPreparer):
    PREPARERS.add(_cls.name, _cls())


# ---------------------------------------------------------------- the common flow


def prepare(name: str, source: str | Path, *, seed: int = 0, skip_bad: bool = False) -> Prepared:
    """Applies the protocol of paper dataset ``name`` to the folder ``source``.

    Args:
        name: ``busi``, ``croatian-fish``, ``aircraft737`` or ``apples-or-tomatoes``.
        source: a folder in the publisher's layout (an archive must be extracted first:
            :func:`qhead.data.archive.source_folder`).
        seed: split seed (for the datasets split at random).
        skip_bad: drop unreadable images (recorded in ``dropped``) instead of raising.

    Raises:
        UnknownNameError: for an unknown ``name``.
        DataError: for a wrong layout or (without ``skip_bad``) an unreadable image.
    """
    preparer = PREPARERS.get(name)
    source = Path(source)
    if not source.is_dir():
        raise DataError(f"source {source} is not a folder")
    candidates = sorted(preparer.scan(source), key=lambda c: c.rel)
    dropped: list[dict[str, str]] = []
    items: list[Item] = []
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
    if not items:
        raise DataError(f"no images left in {source} after preparation")
    preparer.assign(items, seed)
    return Prepared(name, source, seed, items, sorted(dropped, key=lambda d: d["path"]),
                    duplicates, preparer.protocol, dict(preparer.expected))


def summary_dict(prepared: Prepared, source_label: str | None = None) -> dict[str, Any]:
    """The content of ``summary.json`` (deterministic: no timestamps)."""
    return {
        "dataset": prepared.dataset,
        "source": source_label or str(prepared.source),
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
        "manifest": MANIFEST_NAME,
    }


def summary_markdown(summary: dict[str, Any]) -> str:
    """``summary.md``: the same facts as ``summary.json``, for people."""
    counts = summary["counts"]
    lines = [
        f"# {summary['dataset']}: prepared split",
        "",
        f"- source: `{summary['source']}`",
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
    return "\n".join(lines) + "\n"


def write_prepared(prepared: Prepared, out: str | Path, *, source_label: str | None = None,
                   copy_images: bool = True) -> Path:
    """Writes ``images/``, ``manifest.csv``, ``summary.json`` and ``summary.md`` into ``out``.

    Args:
        prepared: the result of :func:`prepare`.
        out: the output folder; created if needed. If it exists it must be empty or
            hold an earlier preparation (its ``images/`` is replaced).
        source_label: how to name the source in the summary (e.g. the archive's path).
        copy_images: copy the kept images into ``out/images`` (needed when the source
            is a temporary extraction); otherwise the manifest's paths point to the
            source files, relative to ``out``.

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
        else:  # relative to the output folder, so both can move together
            rel = Path(os.path.relpath(Path(item.path).resolve(), out.resolve())).as_posix()
        rows.append(ManifestRow(rel, item.label, item.split, item.sha256, item.crop_bottom))
    manifest = out / MANIFEST_NAME
    manifest.write_bytes(manifest_text(rows).encode("utf-8"))
    summary = summary_dict(prepared, source_label)
    (out / SUMMARY_JSON).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n",
                                    encoding="utf-8")
    (out / SUMMARY_MD).write_text(summary_markdown(summary), encoding="utf-8")
    return manifest


# ---------------------------------------------------------------- registry entries


def _paper_dataset(name: str):
    def build(cfg) -> Any:
        root = _require_root(cfg)
        if is_prepared(root):
            summary = (root if root.is_dir() else root.parent) / SUMMARY_JSON
            if summary.is_file():
                recorded = json.loads(summary.read_text(encoding="utf-8")).get("dataset")
                if recorded and recorded != name:
                    raise DataError(f"{root} was prepared as {recorded!r}, not {name!r}")
            return splits_from_records(manifest_records(root), cfg,
                                       info={"source": "manifest", "dataset": name})
        prepared = prepare(name, root, seed=cfg.split_seed, skip_bad=cfg.skip_bad)
        splits = splits_from_records(
            prepared.records(), cfg,
            info={"source": "raw (prepared in memory)", "seed": cfg.split_seed,
                  "dropped": prepared.dropped, "matches_paper": prepared.matches_paper},
        )
        splits.skipped = [d["reason"] for d in prepared.dropped
                          if d["reason"].startswith(("unreadable", "cannot read"))
                          ] + splits.skipped
        return splits

    build.__doc__ = (f"{PREPARERS.describe(name)} (root: raw layout or a `qhead prepare` "
                     "folder)")
    return build


PAPER_DATASETS: tuple[str, ...] = ("busi", "croatian-fish", "aircraft737", "apples-or-tomatoes")


def crop_bottom_for(dataset: str) -> int:
    """Rows a dataset's images lose at the bottom (20 for ``aircraft737``'s banner, else 0).

    For ``qhead predict`` on raw files of that dataset:
    ``load_image(path, size, normalize, crop_bottom=crop_bottom_for(cfg.data.name))``.
    """
    return PREPARERS.get(dataset).crop_bottom if dataset in PREPARERS else 0
for _name in PAPER_DATASETS:
    DATASETS.add(_name, _paper_dataset(_name))
