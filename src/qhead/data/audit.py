"""Data audit: exact and near-duplicate images, within and across classes and splits.

* **Exact duplicates**: equal :func:`~qhead.data.loading.pixel_sha256` (size + decoded
  RGB pixels), so the same picture saved twice, re-encoded losslessly, or with other
  metadata is found.
* **Near-duplicates**: perceptual hash (``imagehash.phash``: DCT of the 32×32 grey
  image, ``hash_size² = 64`` bits by default) at Hamming distance ``<= threshold``,
  between images whose pixels differ.
* **Leakage**: test images with an exact or near duplicate in the training split.

Each pair is classed as same/cross class and same/cross split. Unreadable files are
listed, not fatal.
"""

from __future__ import annotations

import contextlib
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qhead.data.datasets import (
    Record,
    manifest_records,
    read_csv_records,
    scan_imagefolder,
)
from qhead.data.duplicates import (
    DEFAULT_HASH_SIZE,
    DEFAULT_THRESHOLD,
    connected_components,
    near_pairs,
    perceptual_hash,
)
from qhead.data.loading import decode_image, pixel_sha256
from qhead.data.manifest import MANIFEST_NAME
from qhead.dataspec import DATASET_SPECS, spec_names
from qhead.errors import DataError

__all__ = ["DEFAULT_HASH_SIZE", "DEFAULT_THRESHOLD", "audit", "audit_records",
           "collect_records", "report_json", "report_markdown"]


@dataclass
class _Entry:
    name: str
    label: str
    split: str
    pixels: str
    phash: np.ndarray  # bool [hash_size²]


def collect_records(target: str | Path, dataset: str | None = None) -> tuple[list[Record], Path]:
    """The images to audit and the folder their names are shown relative to.

    Args:
        target: a ``manifest.csv``, a ``path,label[,split]`` CSV, a prepared folder, a
            paper dataset's raw folder, or an image folder (class sub-folders, optionally
            under ``train/`` + ``test/``).
        dataset: force how a raw folder is read (a paper dataset's name, or
            ``imagefolder``); by default it is detected by the datasets' layout markers
            (:meth:`qhead.dataspec.DatasetSpec.detects`), else read as an image folder.

    Raises:
        DataError: if ``target`` does not exist or holds no images.
    """
    from qhead.data.prepare import PREPARERS

    path = Path(target).expanduser()
    if not path.exists():
        raise DataError(f"{path} does not exist")
    if path.is_file():
        header = path.read_text(encoding="utf-8-sig").split("\n", 1)[0].lower()
        if "sha256" in header:
            return manifest_records(path), path.parent
        return read_csv_records(path), path.parent
    if (path / MANIFEST_NAME).is_file() and dataset is None:
        return manifest_records(path), path
    if dataset is None:
        detected = [n for n in spec_names() if DATASET_SPECS.get(n).detects(path)]
        dataset = detected[0] if detected else "imagefolder"
    if dataset == "imagefolder":
        records, _ = scan_imagefolder(path)
        return records, path
    preparer = PREPARERS.get(dataset)
    return [Record(str(c.path), c.label, c.split, preparer.crop_bottom)
            for c in preparer.scan(path)], path


def audit_records(
    records: list[Record],
    *,
    base: Path | None = None,
    threshold: int = DEFAULT_THRESHOLD,
    hash_size: int = DEFAULT_HASH_SIZE,
) -> dict[str, Any]:
    """Finds exact and near-duplicates and train/test leakage.

    Args:
        records: the images (``split`` may be ``None`` for an unsplit folder).
        base: folder that names are shown relative to.
        threshold: largest Hamming distance between perceptual hashes counted as a
            near-duplicate (of ``hash_size²`` bits).
        hash_size: perceptual hash side (``hash_size²`` bits).

    Returns:
        a JSON-serialisable report (see :func:`report_markdown` for the fields).
    """
    if threshold < 0 or hash_size < 2:
        raise DataError("threshold must be >= 0 and hash_size >= 2")
    entries: list[_Entry] = []
    unreadable: list[str] = []
    for rec in records:
        name = rec.path
        if base is not None:
            # outside base (a manifest pointing at its source in place): the resolved path
            name = Path(rec.path).resolve().as_posix()
            with contextlib.suppress(ValueError):
                name = Path(rec.path).resolve().relative_to(base.resolve()).as_posix()
        try:
            img = decode_image(rec.path, name=name, crop_bottom=rec.crop_bottom)
        except DataError as error:
            unreadable.append(str(error))
            continue
        phash = perceptual_hash(img, hash_size)
        entries.append(_Entry(name, rec.label, rec.split or "", pixel_sha256(img), phash))

    def describe(idx: list[int]) -> list[dict[str, str]]:
        return [{"path": entries[i].name, "label": entries[i].label,
                 "split": entries[i].split} for i in idx]

    groups: dict[str, list[int]] = defaultdict(list)
    for i, e in enumerate(entries):
        groups[e.pixels].append(i)
    exact = []
    for idx in sorted((g for g in groups.values() if len(g) > 1), key=lambda g: entries[g[0]].name):
        labels = {entries[i].label for i in idx}
        splits = {entries[i].split for i in idx}
        exact.append({"images": describe(idx), "cross_class": len(labels) > 1,
                      "cross_split": len(splits) > 1})

    near = []
    bits = np.stack([e.phash for e in entries]) if entries else np.zeros((0, hash_size**2), bool)
    for i, j, d in near_pairs(bits, threshold):
        if entries[i].name > entries[j].name:
            i, j = j, i
        a, b = entries[i], entries[j]
        if a.pixels == b.pixels:
            continue
        near.append({"a": describe([i])[0], "b": describe([j])[0], "distance": d,
                     "cross_class": a.label != b.label, "cross_split": a.split != b.split})
    near.sort(key=lambda p: (p["distance"], p["a"]["path"], p["b"]["path"]))

    # near-duplicate clusters (connected components of the pair graph)
    index = {e.name: k for k, e in enumerate(entries)}
    roots = connected_components(
        len(entries), ((index[p["a"]["path"]], index[p["b"]["path"]]) for p in near))
    sizes: dict[int, int] = defaultdict(int)
    for root in roots:
        sizes[root] += 1
    clusters = [s for s in sizes.values() if s > 1]

    leaks: dict[str, dict[str, Any]] = {}

    def leak(test: dict[str, str], train: dict[str, str], kind: str, distance: int) -> None:
        entry = leaks.setdefault(test["path"], {"test": test["path"], "label": test["label"],
                                                "matches": []})
        entry["matches"].append({"train": train["path"], "label": train["label"],
                                 "kind": kind, "distance": distance})

    for group in exact:
        tests = [m for m in group["images"] if m["split"] == "test"]
        trains = [m for m in group["images"] if m["split"] == "train"]
        for t in tests:
            for r in trains:
                leak(t, r, "exact", 0)
    for p in near:
        pair = {p["a"]["split"]: p["a"], p["b"]["split"]: p["b"]}
        if set(pair) == {"train", "test"}:
            leak(pair["test"], pair["train"], "near", p["distance"])
    has_splits = any(e.split for e in entries)
    return {
        "images": len(entries),
        "unreadable": unreadable,
        "hash": f"phash, {hash_size * hash_size} bits",
        "threshold": threshold,
        "splits": sorted({e.split for e in entries if e.split}),
        "summary": {
            "exact_groups": len(exact),
            "exact_images": sum(len(g["images"]) for g in exact),
            "exact_cross_class_groups": sum(g["cross_class"] for g in exact),
            "exact_cross_split_groups": sum(g["cross_split"] for g in exact),
            "near_pairs": len(near),
            "near_cross_class_pairs": sum(p["cross_class"] for p in near),
            "near_cross_split_pairs": sum(p["cross_split"] for p in near),
            "near_clusters": len(clusters),
            "near_images": sum(clusters),
            "leaked_test_images": len(leaks) if has_splits else None,
        },
        "exact_duplicates": exact,
        "near_duplicates": near,
        "leakage": sorted(leaks.values(), key=lambda d: d["test"]),
    }


def audit(target: str | Path, *, dataset: str | None = None, threshold: int = DEFAULT_THRESHOLD,
          hash_size: int = DEFAULT_HASH_SIZE) -> dict[str, Any]:
    """:func:`collect_records` then :func:`audit_records`; adds ``target`` to the report."""
    records, base = collect_records(target, dataset)
    if not records:
        raise DataError(f"{target} holds no images")
    report = audit_records(records, base=base, threshold=threshold, hash_size=hash_size)
    return {"target": str(target), **report}


def report_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"


def report_markdown(
    report: dict[str, Any], *, max_items: int = 20,
    more_hint: str = "`--format json` or a larger `--max-items` lists them all",
) -> str:
    """A Markdown rendering of an audit report (lists cut to ``max_items`` entries;
    ``more_hint`` says where the rest is, e.g. the JSON file written beside it)."""
    s = report["summary"]
    lines = [
        f"# Data audit: `{report.get('target', '')}`",
        "",
        f"- images: {report['images']} (unreadable: {len(report['unreadable'])}); "
        f"splits: {', '.join(report['splits']) or 'none'}",
        f"- near-duplicate rule: {report['hash']}, Hamming distance <= {report['threshold']}",
        "",
        "| finding | count |",
        "|---|---:|",
        f"| exact-duplicate groups (images) | {s['exact_groups']} ({s['exact_images']}) |",
        f"| … across classes | {s['exact_cross_class_groups']} |",
        f"| … across splits | {s['exact_cross_split_groups']} |",
        f"| near-duplicate pairs | {s['near_pairs']} |",
        f"| … across classes | {s['near_cross_class_pairs']} |",
        f"| … across splits | {s['near_cross_split_pairs']} |",
        f"| near-duplicate clusters (images) | {s['near_clusters']} ({s['near_images']}) |",
    ]
    if s["leaked_test_images"] is not None:
        lines.append(f"| test images with a duplicate in train (leakage) | "
                     f"{s['leaked_test_images']} |")

    def cut(items: list[Any]) -> tuple[list[Any], str]:
        more = len(items) - max_items
        return items[:max_items], (f"- … and {more} more ({more_hint})" if more > 0
                                   else "")

    def fmt(m: dict[str, str]) -> str:
        split = f", {m['split']}" if m["split"] else ""
        return f"`{m['path']}` ({m['label']}{split})"

    lines += ["", "## Exact duplicates", ""]
    shown, more = cut(report["exact_duplicates"])
    lines += [f"- {' = '.join(fmt(m) for m in g['images'])}" for g in shown] or ["none"]
    lines += [more] if more else []
    lines += ["", "## Near-duplicates (closest first)", ""]
    shown, more = cut(report["near_duplicates"])
    lines += [f"- d={p['distance']}: {fmt(p['a'])} ~ {fmt(p['b'])}" for p in shown] or ["none"]
    lines += [more] if more else []
    if s["leaked_test_images"] is not None:
        lines += ["", "## Train/test leakage", ""]
        shown, more = cut(report["leakage"])
        for leak in shown:
            matches = "; ".join(f"{m['kind']} d={m['distance']} `{m['train']}` ({m['label']})"
                                for m in leak["matches"])
            lines.append(f"- `{leak['test']}` ({leak['label']}): {matches}")
        lines += [] if shown else ["none"]
        lines += [more] if more else []
    if report["unreadable"]:
        lines += ["", "## Unreadable", ""] + [f"- {u}" for u in report["unreadable"]]
    return "\n".join(lines) + "\n"
