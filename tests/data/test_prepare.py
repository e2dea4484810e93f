from __future__ import annotations

import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from qhead.cli import main
from qhead.data import DataConfig, build_datasets, prepare, read_manifest, write_prepared
from qhead.data.prepare import AIRCRAFT_737, crop_bottom_for, is_busi_mask
from qhead.errors import DataError

SHARED_BUSI = Path(__file__).resolve().parents[3] / "shared" / "data" / "busi"


def make_busi(root: Path, make_image) -> Path:
    """BUSI layout: 12 benign, 8 malignant, 6 normal images with masks;
    benign (3) ≡ malignant (2) (same pixels, different bytes); benign (5) ≡ benign (6)."""
    base = root / "Dataset_BUSI_with_GT"
    for label, n, offset in (("benign", 12, 0), ("malignant", 8, 100), ("normal", 6, 200)):
        for i in range(1, n + 1):
            img = make_image(base / label / f"{label} ({i}).png", seed=offset + i)
            Image.open(img).convert("L").save(base / label / f"{label} ({i})_mask.png")
            if i == 2:
                Image.open(img).convert("1").save(base / label / f"{label} ({i})_mask_1.png")
    shutil.copy(base / "malignant" / "malignant (2).png", base / "tmp.png")
    Image.open(base / "tmp.png").save(base / "benign" / "benign (3).png", compress_level=0)
    (base / "tmp.png").unlink()
    shutil.copy(base / "benign" / "benign (5).png", base / "benign" / "benign (6).png")
    return root


def test_mask_names():
    assert is_busi_mask(Path("benign (4)_mask.png"))
    assert is_busi_mask(Path("benign (4)_mask_1.png"))
    assert not is_busi_mask(Path("benign (4).png"))


def test_busi_protocol(tmp_path, make_image):
    src = make_busi(tmp_path / "src", make_image)
    prep = prepare("busi", src)
    assert len(prep.items) == 24  # 26 images, masks excluded, the cross-class pair dropped
    assert not any("_mask" in i.rel for i in prep.items)
    dropped = {d["path"] for d in prep.dropped}
    assert dropped == {"Dataset_BUSI_with_GT/benign/benign (3).png",
                       "Dataset_BUSI_with_GT/malignant/malignant (2).png"}
    same_class = [d for d in prep.duplicates if not d["cross_class"]]
    assert len(same_class) == 1 and same_class[0]["action"] == "kept"
    assert same_class[0]["paths"] == ["Dataset_BUSI_with_GT/benign/benign (5).png",
                                      "Dataset_BUSI_with_GT/benign/benign (6).png"]
    # test size round(24 * 158 / 778) = 5, largest remainders → benign 2, malignant 2, normal 1
    assert prep.counts()["test"] == {"benign": 2, "malignant": 2, "normal": 1}
    assert prep.counts()["train"] == {"benign": 9, "malignant": 5, "normal": 5}
    assert not prep.matches_paper


def test_prepare_is_byte_identical_and_seeded(tmp_path, make_image):
    src = make_busi(tmp_path / "src", make_image)
    a = write_prepared(prepare("busi", src, seed=3), tmp_path / "a")
    b = write_prepared(prepare("busi", src, seed=3), tmp_path / "b")
    again = write_prepared(prepare("busi", src, seed=3), tmp_path / "a")  # overwrite in place
    assert a.read_bytes() == b.read_bytes() == again.read_bytes()
    assert (tmp_path / "a" / "summary.json").read_bytes() == (
        tmp_path / "b" / "summary.json").read_bytes()
    c = write_prepared(prepare("busi", src, seed=4), tmp_path / "c")
    assert a.read_bytes() != c.read_bytes()
    rows = read_manifest(a)
    assert rows == sorted(rows, key=lambda r: r.path)
    # the copies are byte-identical to the sources, and the sha256 column says so
    for row in rows:
        assert (tmp_path / "a" / row.path).read_bytes() == (
            src / row.path.removeprefix("images/")).read_bytes()
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["seed"] == 3 and summary["observed"]["total"] == 24
    assert "benign (3).png" in (tmp_path / "a" / "summary.md").read_text()


def test_raw_root_and_prepared_folder_give_the_same_split(tmp_path, make_image):
    src = make_busi(tmp_path / "src", make_image)
    write_prepared(prepare("busi", src, seed=0), tmp_path / "out")
    raw = build_datasets(DataConfig(name="busi", root=str(src), image_size=8))
    prepared = build_datasets(DataConfig(name="busi", root=str(tmp_path / "out"), image_size=8))
    generic = build_datasets(DataConfig(name="manifest", root=str(tmp_path / "out"),
                                        image_size=8))

    def rel(paths, base):
        return [str(Path(p).relative_to(base)) for p in paths]

    assert rel(raw.test.paths, src) == rel(prepared.test.paths, tmp_path / "out" / "images")
    assert prepared.test.paths == generic.test.paths
    assert raw.classes == prepared.classes == ["benign", "malignant", "normal"]
    assert raw.info["matches_paper"] is False
    with pytest.raises(DataError, match="prepared as 'busi'"):
        build_datasets(DataConfig(name="aircraft737", root=str(tmp_path / "out")))


def test_changed_file_after_prepare_is_detected(tmp_path, make_image):
    src = make_busi(tmp_path / "src", make_image)
    write_prepared(prepare("busi", src), tmp_path / "out")
    splits = build_datasets(DataConfig(name="manifest", root=str(tmp_path / "out"),
                                       image_size=8))
    make_image(Path(splits.train.paths[0]), seed=999)
    with pytest.raises(DataError, match="sha256"):
        splits.train[0]


def test_corrupt_source_image(tmp_path, make_image):
    src = make_busi(tmp_path / "src", make_image)
    bad = src / "Dataset_BUSI_with_GT" / "normal" / "normal (4).png"
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(DataError, match=r"normal \(4\)\.png"):
        prepare("busi", src)
    prep = prepare("busi", src, skip_bad=True)
    reasons = {d["path"]: d["reason"] for d in prep.dropped}
    assert reasons["Dataset_BUSI_with_GT/normal/normal (4).png"].startswith("unreadable")
    assert len(prep.items) == 23


def test_wrong_layout_and_out_folder(tmp_path, make_image):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="Dataset_BUSI_with_GT"):
        prepare("busi", tmp_path / "empty")
    src = make_busi(tmp_path / "src", make_image)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(DataError, match="not written by"):
        write_prepared(prepare("busi", src), foreign)
    assert (foreign / "precious.txt").read_text() == "keep me"


FISH = ["Chromis chromis", "Coris julis", "Dentex dentex", "Diplodus annularis",
        "Diplodus vulgaris", "Epinephelus marginatus", "Lithognathus mormyrus",
        "Oblada melanura", "Sarpa salpa", "Serranus scriba", "Spondyliosoma cantharus",
        "Symphodus tinca"]


def test_croatian_fish_from_zip_via_cli(tmp_path, make_image, capsys):
    layout = tmp_path / "layout"
    for k, species in enumerate(FISH):
        for i in range(5):
            make_image(layout / "fishes" / species / f"img_{i:03d}.jpg", seed=500 + 10 * k + i)
    (layout / "fishes" / "Thumbs.db").write_bytes(b"junk")
    archive = tmp_path / "croatian_fish.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(layout.rglob("*")):
            zf.write(p, p.relative_to(layout).as_posix())
    out = tmp_path / "out"
    assert main(["prepare", "croatian-fish", str(archive), "--out", str(out), "--seed", "7"]) == 0
    assert "60 images, 12 classes, train 48 / test 12" in capsys.readouterr().out
    rows = read_manifest(out)
    assert sorted({r.label for r in rows}) == sorted(FISH)
    assert all(sum(r.label == s and r.split == "test" for r in rows) == 1 for s in FISH)
    splits = build_datasets(DataConfig(name="croatian-fish", root=str(out), image_size=8))
    assert len(splits.train) == 48 and splits.num_classes == 12
    # the raw folder with the same seed gives the same split
    raw = build_datasets(DataConfig(name="croatian-fish", root=str(layout), image_size=8,
                                    split_seed=7))
    assert [Path(p).name for p in raw.test.paths] == [Path(p).name for p in splits.test.paths]


def make_aircraft(root: Path, *, missing: str | None = None) -> Path:
    data = root / "fgvc-aircraft-2013b" / "data"
    (data / "images").mkdir(parents=True)
    others = ["707-320", "A320", "Cessna 172", "DC-10", "F/A-18"]
    (data / "variants.txt").write_text("\n".join(others[:2] + list(AIRCRAFT_737)
                                                 + others[2:]) + "\n")
    trainval, test = [], []
    n = 0
    for variant in list(AIRCRAFT_737) + others:
        for split in ("trainval", "trainval", "test"):
            image_id = f"{1000000 + n:07d}"
            n += 1
            (trainval if split == "trainval" else test).append(f"{image_id} {variant}")
            if image_id == missing:
                continue
            arr = np.zeros((40, 24, 3), np.uint8)
            arr[:20] = (n * 7) % 60  # dark picture
            arr[20:] = 255  # 20-px white copyright banner
            Image.fromarray(arr).save(data / "images" / f"{image_id}.jpg", quality=95)
    (data / "images_variant_trainval.txt").write_text("\n".join(trainval) + "\n")
    (data / "images_variant_test.txt").write_text("\n".join(test) + "\n")
    return root


def test_aircraft737_from_tgz_via_cli(tmp_path, capsys):
    layout = make_aircraft(tmp_path / "layout")
    archive = tmp_path / "fgvc-aircraft-2013b.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(layout / "fgvc-aircraft-2013b", arcname="fgvc-aircraft-2013b")
    out = tmp_path / "out"
    assert main(["prepare", "aircraft737", str(archive), "--out", str(out)]) == 0
    assert "24 images, 8 classes, train 16 / test 8" in capsys.readouterr().out
    rows = read_manifest(out)
    assert sorted({r.label for r in rows}) == list(AIRCRAFT_737)
    assert all(r.crop_bottom == 20 for r in rows)
    assert all(r.path.startswith("images/fgvc-aircraft-2013b/data/images/") for r in rows)
    splits = build_datasets(DataConfig(name="aircraft737", root=str(out), image_size=16,
                                       normalize="none", hflip=False))
    assert (len(splits.train), len(splits.test)) == (16, 8)
    x, _ = splits.test[0]
    assert x.max() < 0.3  # the white banner is gone
    assert crop_bottom_for("aircraft737") == 20 and crop_bottom_for("digits") == 0


def test_aircraft737_missing_image_is_named(tmp_path):
    layout = make_aircraft(tmp_path / "layout", missing="1000004")
    with pytest.raises(DataError, match=r"1000004\.jpg"):
        prepare("aircraft737", layout)
    prep = prepare("aircraft737", layout, skip_bad=True)
    assert [d["path"] for d in prep.dropped] == [
        "fgvc-aircraft-2013b/data/images/1000004.jpg"]


def test_apples_or_tomatoes_given_split(tmp_path, make_image, capsys):
    layout = tmp_path / "layout"
    counts = {("train", "apples"): 3, ("train", "tomatoes"): 4, ("test", "apples"): 2,
              ("test", "tomatoes"): 1}
    seed = 0
    for (split, label), n in counts.items():
        for i in range(n):
            seed += 1
            make_image(layout / split / label / f"img_{i}.jpeg", seed=seed)
    out = tmp_path / "out"
    assert main(["prepare", "apples-or-tomatoes", str(layout), "--out", str(out)]) == 0
    assert "train 7 / test 3" in capsys.readouterr().out
    splits = build_datasets(DataConfig(name="apples-or-tomatoes", root=str(out), image_size=8))
    assert splits.classes == ["apples", "tomatoes"]
    assert sorted(splits.test.labels) == [0, 0, 1]
    assert all("/test/" in p for p in splits.test.paths)


def test_prepare_cli_errors_and_no_copy(tmp_path, make_image, capsys):
    assert main(["prepare", "busi", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 1
    assert "does not exist" in capsys.readouterr().err
    src = make_busi(tmp_path / "src", make_image)
    assert main(["prepare", "busi", str(src), "--out", str(tmp_path / "o"), "--no-copy"]) == 0
    assert not (tmp_path / "o" / "images").exists()
    assert read_manifest(tmp_path / "o")[0].path.startswith("../src/Dataset_BUSI_with_GT/")
    splits = build_datasets(DataConfig(name="busi", root=str(tmp_path / "o"), image_size=8))
    assert len(splits.train) + len(splits.test) == 24


def test_prepare_cli_leaves_folder_images_in_place_by_default(tmp_path, make_image, capsys):
    src = make_busi(tmp_path / "src", make_image)
    before = sorted(p for p in src.rglob("*"))
    assert main(["prepare", "busi", str(src), "--out", str(tmp_path / "o")]) == 0
    printed = capsys.readouterr().out
    assert f"images: left in place in {src.resolve()}" in printed
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "manifest.csv", "summary.json", "summary.md"]
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["images"] == "in place"
    assert "left in the source folder" in (tmp_path / "o" / "summary.md").read_text()
    rows = read_manifest(tmp_path / "o")
    assert all((tmp_path / "o" / r.path).resolve().is_relative_to(src.resolve()) for r in rows)
    assert sorted(p for p in src.rglob("*")) == before  # nothing written into the source
    # --copy makes a self-contained folder (and replaces the in-place preparation)
    assert main(["prepare", "busi", str(src), "--out", str(tmp_path / "o"), "--copy"]) == 0
    assert f"images: copied to {tmp_path / 'o' / 'images'}" in capsys.readouterr().out
    assert all(r.path.startswith("images/") for r in read_manifest(tmp_path / "o"))
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["images"] == "copied"
    with pytest.raises(SystemExit):
        main(["prepare", "busi", str(src), "--out", str(tmp_path / "x"), "--copy", "--no-copy"])


def test_default_output_folders_are_ignored_by_git():
    import subprocess

    repo = Path(__file__).resolve().parents[2]
    if shutil.which("git") is None or not (repo / ".git").exists():
        pytest.skip("not a git checkout")
    paths = ["data/busi/manifest.csv", "runs/x/last.pt", "src/qhead/data/prepare.py",
             "tests/data/test_prepare.py"]
    done = subprocess.run(["git", "-C", str(repo), "check-ignore", *paths],
                          capture_output=True, text=True, check=False)
    assert done.stdout.split() == paths[:2]  # the package's own data/ folders stay tracked


def test_in_place_paths_are_relative_unless_only_the_root_is_shared(tmp_path):
    from qhead.data.prepare import _path_from

    image = tmp_path / "src" / "a b.png"
    assert _path_from(tmp_path / "out" / "deep", image) == "../../src/a b.png"
    assert _path_from(Path("/nonexistent-out"), Path("/elsewhere/x.png")) == "/elsewhere/x.png"


@pytest.mark.skipif(not SHARED_BUSI.is_dir(), reason="shared BUSI copy not present")
def test_real_busi_prepares_to_paper_counts(tmp_path):
    prep = prepare("busi", SHARED_BUSI)
    assert prep.observed() == {"total": 778, "train": 620, "test": 158, "classes": 3}
    assert prep.matches_paper
    assert [d["path"] for d in prep.dropped] == [
        "Dataset_BUSI_with_GT/benign/benign (433).png",
        "Dataset_BUSI_with_GT/malignant/malignant (145).png",
    ]
    assert len(prep.duplicates) == 1  # no other exact duplicate
    manifest = write_prepared(prep, tmp_path / "busi", copy_images=False)
    rows = read_manifest(manifest)
    assert len(rows) == 778 and sum(r.split == "test" for r in rows) == 158
    x = build_datasets(DataConfig(name="manifest", root=str(manifest), image_size=32)).test[0][0]
    assert x.shape == (3, 32, 32) and torch.isfinite(x).all()
