from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qhead.cli import main
from qhead.data.audit import audit
from qhead.data.duplicates import connected_components, near_pairs

SHARED_BUSI = Path(__file__).resolve().parents[3] / "shared" / "data" / "busi"


@pytest.fixture
def folder(tmp_path, make_image) -> Path:
    root = tmp_path / "data"
    for i in range(1, 5):
        make_image(root / "train" / "a" / f"a{i}.png", seed=i)
        make_image(root / "train" / "b" / f"b{i}.png", seed=10 + i)
    # exact duplicate across splits (same class), re-encoded as BMP
    (root / "test" / "a").mkdir(parents=True)
    Image.open(root / "train" / "a" / "a1.png").save(root / "test" / "a" / "t1.bmp")
    # near duplicate across splits and classes: a2 plus ±3 noise
    make_image(root / "test" / "b" / "t2.png", seed=2, noise=3)
    make_image(root / "test" / "b" / "t3.png", seed=30)  # unrelated
    make_image(root / "test" / "a" / "t4.png", seed=40)
    # exact duplicate across classes inside train
    shutil.copy(root / "train" / "a" / "a3.png", root / "train" / "b" / "b_copy.png")
    (root / "train" / "b" / "broken.png").write_bytes(b"")
    return root


def test_audit_finds_duplicates_and_leakage(folder):
    report = audit(folder)
    s = report["summary"]
    assert report["images"] == 13 and len(report["unreadable"]) == 1
    assert "broken.png" in report["unreadable"][0]
    assert s["exact_groups"] == 2
    assert s["exact_cross_class_groups"] == 1 and s["exact_cross_split_groups"] == 1
    groups = [sorted(m["path"] for m in g["images"]) for g in report["exact_duplicates"]]
    assert sorted(groups) == [["test/a/t1.bmp", "train/a/a1.png"],
                              ["train/a/a3.png", "train/b/b_copy.png"]]
    pairs = {(p["a"]["path"], p["b"]["path"]) for p in report["near_duplicates"]}
    assert ("test/b/t2.png", "train/a/a2.png") in pairs
    assert s["near_pairs"] == 1 and s["near_cross_class_pairs"] == 1
    leaks = {leak["test"]: leak["matches"] for leak in report["leakage"]}
    assert set(leaks) == {"test/a/t1.bmp", "test/b/t2.png"}
    assert leaks["test/a/t1.bmp"][0]["kind"] == "exact"
    assert leaks["test/b/t2.png"][0]["kind"] == "near"
    assert s["leaked_test_images"] == 2


def test_threshold_zero_keeps_only_identical_hashes(folder):
    report = audit(folder, threshold=0)
    assert all(p["distance"] == 0 for p in report["near_duplicates"])


def test_hamming_pairs_against_brute_force():
    rng = np.random.default_rng(0)
    bits = rng.random((40, 64)) < 0.5
    bits[5] = bits[3]
    bits[7, :3] = ~bits[7, :3]
    expected = [(i, j, int((bits[i] != bits[j]).sum())) for i in range(40) for j in range(i + 1, 40)
                if (bits[i] != bits[j]).sum() <= 20]
    assert sorted(near_pairs(bits, 20)) == expected


def test_connected_components_are_order_independent():
    edges = [(4, 1), (1, 6), (2, 3), (7, 7)]
    roots = connected_components(8, edges)
    assert roots == [0, 1, 2, 2, 1, 5, 1, 7]
    assert connected_components(8, reversed(edges)) == roots


def test_audit_cli(folder, tmp_path, capsys):
    assert main(["audit", str(folder), "--format", "json", "--out", str(tmp_path / "rep")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["summary"]["leaked_test_images"] == 2
    assert "leakage" in (tmp_path / "rep" / "audit.md").read_text()
    assert json.loads((tmp_path / "rep" / "audit.json").read_text()) == report
    assert main(["audit", str(folder), "--fail-on-leak"]) == 3
    assert "| test images with a duplicate in train (leakage) | 2 |" in capsys.readouterr().out
    assert main(["audit", str(tmp_path / "nope")]) == 1


def test_audit_csv_and_manifest(tmp_path, make_image):
    for i in range(3):
        make_image(tmp_path / "imgs" / f"{i}.png", seed=i)
    shutil.copy(tmp_path / "imgs" / "0.png", tmp_path / "imgs" / "dup.png")
    (tmp_path / "list.csv").write_text(
        "path,label,split\nimgs/0.png,x,train\nimgs/1.png,y,train\nimgs/2.png,y,test\n"
        "imgs/dup.png,y,test\n")
    report = audit(tmp_path / "list.csv")
    assert report["summary"]["exact_cross_class_groups"] == 1
    assert report["leakage"][0]["test"] == "imgs/dup.png"


@pytest.mark.skipif(not SHARED_BUSI.is_dir(), reason="shared BUSI copy not present")
def test_real_busi_audit():
    report = audit(SHARED_BUSI)
    assert report["images"] == 780
    assert [sorted(m["path"] for m in g["images"]) for g in report["exact_duplicates"]] == [[
        "Dataset_BUSI_with_GT/benign/benign (433).png",
        "Dataset_BUSI_with_GT/malignant/malignant (145).png"]]
    assert report["summary"]["near_cross_class_pairs"] >= 1
