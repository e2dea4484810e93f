"""The ``grouped`` split protocol: near-duplicate clusters never cross train/test."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qhead.cli import main
from qhead.data import DataConfig, build_datasets, prepare, read_manifest, write_prepared
from qhead.data.audit import audit
from qhead.data.splits import allocate_test_counts, grouped_stratified_split
from qhead.engine.config import load_config
from qhead.errors import ConfigError, DataError

SHARED_BUSI = Path(__file__).resolve().parents[3] / "shared" / "data" / "busi"
BUSI = "Dataset_BUSI_with_GT"
SIZE = (128, 96)

# (class, number) of the planted near-duplicates: the same seed, with ±3 noise
SAME_CLASS = [
    [("benign", 1), ("benign", 2)],
    [("benign", 3), ("benign", 4), ("benign", 5)],
    [("malignant", 1), ("malignant", 2)],
    [("normal", 1), ("normal", 2)],
]
CROSS_CLASS = [
    [("benign", 20), ("malignant", 10)],
    [("benign", 21), ("benign", 22), ("normal", 5)],  # a chain: one cluster, two labels
]


def _name(label: str, n: int) -> str:
    return f"{BUSI}/{label}/{label} ({n}).png"


def make_planted_busi(root: Path, make_image) -> Path:
    """BUSI layout, 30 benign / 16 malignant / 12 normal, with the clusters above."""
    seed_of: dict[tuple[str, int], int] = {}
    for k, cluster in enumerate(SAME_CLASS + CROSS_CLASS):
        for member in cluster:
            seed_of[member] = 500 + k
    offsets = {"benign": 0, "malignant": 100, "normal": 200}
    for label, count in (("benign", 30), ("malignant", 16), ("normal", 12)):
        for n in range(1, count + 1):
            key = (label, n)
            if key in seed_of:
                path = make_image(root / _name(label, n), seed=seed_of[key], size=SIZE)
                # the same picture with its own ±1 noise: pixels differ, phash stays close
                pixels = np.asarray(Image.open(path), dtype=np.int16)
                pixels += np.random.default_rng(n + offsets[label]).integers(
                    -1, 2, size=pixels.shape, dtype=np.int16)
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
            else:
                make_image(root / _name(label, n), seed=offsets[label] + n, size=SIZE)
    # an exact duplicate (same bytes) within a class joins a cluster too
    (root / _name("normal", 12)).write_bytes((root / _name("normal", 11)).read_bytes())
    return root


@pytest.fixture
def planted(tmp_path, make_image) -> Path:
    return make_planted_busi(tmp_path / "src", make_image)


def test_grouped_splitter_keeps_groups_whole_and_meets_the_quota():
    keys = [f"k{i:02d}" for i in range(40)]
    labels = ["a"] * 25 + ["b"] * 15
    groups = [f"g{i // 3}" if i < 12 else f"s{i}" for i in range(25)] + [
        f"h{i // 2}" if i < 6 else f"t{i}" for i in range(15)]
    splits = grouped_stratified_split(keys, labels, groups, seed=0, n_test=10)
    by_group = defaultdict(set)
    for g, s in zip(groups, splits, strict=True):
        by_group[g].add(s)
    assert all(len(s) == 1 for s in by_group.values())
    test = Counter(lab for lab, s in zip(labels, splits, strict=True) if s == "test")
    assert dict(test) == allocate_test_counts({"a": 25, "b": 15}, 10)  # a 6, b 4
    assert grouped_stratified_split(keys, labels, groups, seed=0, n_test=10) == splits
    assert grouped_stratified_split(keys, labels, groups, seed=1, n_test=10) != splits
    with pytest.raises(ValueError, match="two labels"):
        grouped_stratified_split(["x", "y"], ["a", "b"], ["g", "g"], seed=0, n_test=1)


def test_grouped_protocol_on_planted_near_duplicates(planted, tmp_path):
    prep = prepare("busi", planted, split="grouped", seed=0)
    rel = {i.rel: i for i in prep.items}
    # cross-class clusters: every member dropped, and listed
    crossed = {_name(*m) for c in CROSS_CLASS for m in c}
    assert crossed.isdisjoint(rel)
    listed = [sorted(m["path"] for m in c["images"]) for c in
              prep.grouping["cross_class_clusters"]]
    assert sorted(listed) == sorted(sorted(_name(*m) for m in c) for c in CROSS_CLASS)
    reasons = {d["path"]: d["reason"] for d in prep.dropped}
    assert all("same scan, two labels" in reasons[p] for p in crossed)
    assert prep.grouping["dropped_cross_class_images"] == 5
    # planted same-class clusters share one id; nothing else was clustered
    for cluster in [*SAME_CLASS, [("normal", 11), ("normal", 12)]]:
        assert len({rel[_name(*m)].cluster for m in cluster}) == 1
    sizes = Counter(i.cluster for i in prep.items)
    assert sorted(n for n in sizes.values() if n > 1) == [2, 2, 2, 2, 3]
    assert prep.grouping["clusters"] == len(sizes) == 58 - 5 - 6
    # no cluster crosses splits
    splits_of = defaultdict(set)
    for item in prep.items:
        splits_of[item.cluster].add(item.split)
    assert all(len(s) == 1 for s in splits_of.values())
    # stratified: within ±1 of the per-class share of round(N·158/778)
    kept = Counter(i.label for i in prep.items)
    target = allocate_test_counts(dict(kept), int(len(prep.items) * 158 / 778 + 0.5))
    test = prep.counts()["test"]
    assert all(abs(test[c] - target[c]) <= 1 for c in target), (test, target)
    # written out: cluster column, and the audit finds no leakage
    manifest = write_prepared(prep, tmp_path / "out", copy_images=False)
    rows = read_manifest(manifest)
    assert manifest.read_text().splitlines()[0].endswith(",crop_bottom,cluster")
    assert {r.path.rsplit("/", 1)[-1]: r.cluster for r in rows} == {
        Path(i.rel).name: i.cluster for i in prep.items}
    report = audit(tmp_path / "out")
    assert report["summary"]["leaked_test_images"] == 0
    assert report["summary"]["near_cross_class_pairs"] == 0
    assert report["summary"]["near_pairs"] > 0  # the clusters are still there, inside splits
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["split"] == "grouped" and summary["grouping"]["threshold"] == 8
    assert "64 bits" in summary["grouping"]["hash"] and summary["images"] == "in place"
    # the paper's split on the same data does leak (the planted clusters are split)
    paper = write_prepared(prepare("busi", planted, seed=0), tmp_path / "paper")
    assert audit(paper.parent)["summary"]["near_cross_class_pairs"] == 3


def test_grouped_split_is_seeded(planted, tmp_path):
    a = write_prepared(prepare("busi", planted, split="grouped", seed=3), tmp_path / "a")
    b = write_prepared(prepare("busi", planted, split="grouped", seed=3), tmp_path / "b")
    c = write_prepared(prepare("busi", planted, split="grouped", seed=4), tmp_path / "c")
    assert a.read_bytes() == b.read_bytes()
    assert [r.split for r in read_manifest(a)] != [r.split for r in read_manifest(c)]
    assert [r.cluster for r in read_manifest(a)] == [r.cluster for r in read_manifest(c)]


def test_data_split_option_on_raw_and_prepared_roots(planted, tmp_path):
    write_prepared(prepare("busi", planted, split="grouped", seed=0), tmp_path / "g",
                   copy_images=False)
    raw = build_datasets(DataConfig(name="busi", root=str(planted), image_size=8,
                                    split="grouped"))
    prepared = build_datasets(DataConfig(name="busi", root=str(tmp_path / "g"), image_size=8,
                                         split="grouped"))
    assert sorted(Path(p).resolve() for p in raw.test.paths) == sorted(
        Path(p).resolve() for p in prepared.test.paths)
    assert raw.info["split"] == prepared.info["split"] == "grouped"
    assert raw.info["grouping"]["threshold"] == 8
    assert raw.info["grouping"]["dropped_cross_class_images"] == 5
    assert len(raw.train) + len(raw.test) == 58 - 5
    with pytest.raises(DataError, match="prepared with split protocol 'grouped'"):
        build_datasets(DataConfig(name="busi", root=str(tmp_path / "g"), image_size=8))
    cfg = load_config(overrides=["data.name=busi", f"data.root={planted}", "data.split=grouped"])
    assert cfg.data.split == "grouped"
    assert load_config().data.split == "paper"
    with pytest.raises(ConfigError, match=r"data\.split=.nope.; allowed: paper, grouped"):
        DataConfig(name="busi", split="nope")
    with pytest.raises(ConfigError, match=r"not of data\.name=.aircraft737."):
        DataConfig(name="aircraft737", split="grouped")
    with pytest.raises(ConfigError, match="given by its publisher"):
        prepare("apples-or-tomatoes", planted, split="grouped")


def test_prepare_cli_grouped(planted, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["prepare", "busi", str(planted), "--split", "grouped", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "(split grouped)" in printed and "2 cross-class clusters dropped (5 images)" in printed
    assert "Hamming distance <= 8" in printed and "images: left in place" in printed
    assert "## Grouped split" in (out / "summary.md").read_text()
    assert main(["audit", str(out), "--fail-on-leak"]) == 0


@pytest.mark.skipif(not SHARED_BUSI.is_dir(), reason="shared BUSI copy not present")
def test_real_busi_grouped_split_has_no_leakage(tmp_path):
    prep = prepare("busi", SHARED_BUSI, split="grouped", seed=0)
    # 778 (paper protocol) - 16 images of the 7 cross-class clusters
    assert prep.observed() == {"total": 762, "train": 607, "test": 155, "classes": 3}
    assert prep.counts()["test"] == {"benign": 87, "malignant": 41, "normal": 27}
    assert len(prep.grouping["cross_class_clusters"]) == 7
    assert prep.grouping["clusters"] == 594
    write_prepared(prep, tmp_path / "g", copy_images=False)
    report = audit(tmp_path / "g")
    assert report["images"] == 762
    assert report["summary"]["leaked_test_images"] == 0
    assert report["summary"]["near_cross_class_pairs"] == 0
