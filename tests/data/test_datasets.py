from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from qhead.data import DATASETS, DataConfig, build_datasets
from qhead.data.loading import IMAGENET_MEAN, IMAGENET_STD
from qhead.errors import ConfigError, DataError


def test_registry_lists_all_datasets():
    for name in ["digits", "imagefolder", "csv", "manifest"]:
        assert name in DATASETS


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [("name", "nope", "digits"), ("image_size", 2, "image_size"),
     ("test_fraction", 1.0, "test_fraction"), ("normalize", "z", "imagenet"),
     ("num_workers", -1, "num_workers"), ("max_per_class", 0, "max_per_class")],
)
def test_config_validation_names_field(field, value, needle):
    with pytest.raises(ConfigError, match=needle):
        DataConfig(**{field: value})


def test_config_is_omegaconf_structured():
    base = OmegaConf.structured(DataConfig)
    merged = OmegaConf.merge(base, OmegaConf.from_dotlist(["image_size=32", "root=/x"]))
    cfg = OmegaConf.to_object(merged)
    assert isinstance(cfg, DataConfig) and cfg.image_size == 32 and cfg.root == "/x"


def test_digits_split_and_items():
    splits = build_datasets(DataConfig(name="digits", image_size=16, hflip=False))
    assert splits.classes == [str(i) for i in range(10)]
    assert len(splits.train) + len(splits.test) == 1797
    assert len(splits.test) == round(0.2 * 1797)
    x, y = splits.test[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and 0 <= y < 10
    # grey → identical channels; normalised per channel with ImageNet stats
    raw = x * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    assert torch.allclose(raw[0], raw[1], atol=1e-5) and torch.allclose(raw[1], raw[2], atol=1e-5)
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
    # stratified: each class has ~20% in test
    test_counts = torch.bincount(torch.tensor(splits.test.labels), minlength=10)
    train_counts = torch.bincount(torch.tensor(splits.train.labels), minlength=10)
    frac = test_counts.float() / (test_counts + train_counts).float()
    assert torch.all((frac - 0.2).abs() < 0.01)


def test_digits_seed_changes_split_and_is_reproducible():
    a = build_datasets(DataConfig(name="digits", image_size=8, split_seed=1))
    b = build_datasets(DataConfig(name="digits", image_size=8, split_seed=1))
    c = build_datasets(DataConfig(name="digits", image_size=8, split_seed=2))
    assert a.test.paths == b.test.paths
    assert a.test.paths != c.test.paths
    assert not set(a.train.paths) & set(a.test.paths)


def test_digits_max_per_class_and_normalize_none():
    s = build_datasets(DataConfig(name="digits", image_size=8, max_per_class=3, normalize="none"))
    assert len(s.train) == 30 and len(s.test) == 30
    x, _ = s.train[0]
    assert x.min() >= 0 and x.max() <= 1


def test_hflip_only_on_train():
    s = build_datasets(DataConfig(name="digits", image_size=8, max_per_class=1))
    x0 = s.train.decode(0)
    seen = {bool(torch.equal(s.train[0][0], s.test.transform.__class__(
        train=False, hflip=False, normalize="imagenet")(x0))) for _ in range(40)}
    assert seen == {True, False}  # flipped sometimes, not always
    assert all(torch.equal(s.test[0][0], s.test[0][0]) for _ in range(5))
    assert s.train.train and not s.test.train
    s.train.train = False  # what evaluation on the training split does
    assert all(torch.equal(s.train[0][0], s.train[0][0]) for _ in range(10))


def test_imagefolder_flat_is_split_stratified(tmp_path, make_image):
    for c in ["cat", "dog"]:
        for i in range(10):
            make_image(tmp_path / c / f"{i}.png", seed=100 * len(c) + i + (50 if c == "dog" else 0))
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    s = build_datasets(DataConfig(name="imagefolder", root=str(tmp_path), image_size=8))
    assert s.classes == ["cat", "dog"]
    assert len(s.train) == 16 and len(s.test) == 4
    assert sorted(s.test.labels) == [0, 0, 1, 1]
    x, _y = s.train[0]
    assert x.shape == (3, 8, 8)
    assert all("notes" not in p for p in s.train.paths + s.test.paths)


def test_imagefolder_with_given_split(tmp_path, make_image):
    for split, n in [("train", 3), ("test", 2)]:
        for c in ["a", "b"]:
            for i in range(n):
                make_image(tmp_path / split / c / f"{i}.jpg", seed=i)
    s = build_datasets(DataConfig(name="imagefolder", root=str(tmp_path), image_size=8))
    assert (len(s.train), len(s.test)) == (6, 4)
    assert all("/test/" in p for p in s.test.paths)
    assert all(s.classes[y] in p.split("/")[-2] for p, y in zip(s.test.paths, s.test.labels,
                                                                 strict=True))


def test_imagefolder_looks_through_a_wrapper_folder(tmp_path, make_image):
    for c in ("a", "b"):
        for i in range(3):
            make_image(tmp_path / "wrapper" / c / f"{i}.png", seed=i + (10 if c == "b" else 0))
    s = build_datasets(DataConfig(name="imagefolder", root=str(tmp_path), image_size=8))
    assert s.classes == ["a", "b"]


def test_imagefolder_errors(tmp_path, make_image):
    with pytest.raises(ConfigError, match=r"data\.root"):
        build_datasets(DataConfig(name="imagefolder"))
    with pytest.raises(DataError, match="does not exist"):
        build_datasets(DataConfig(name="imagefolder", root=str(tmp_path / "missing")))
    make_image(tmp_path / "only" / "0.png", seed=0)
    with pytest.raises(DataError, match="at least 2"):
        build_datasets(DataConfig(name="imagefolder", root=str(tmp_path)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        build_datasets(DataConfig(name="imagefolder", root=str(tmp_path)))


def test_csv_dataset_with_and_without_split(tmp_path, make_image):
    for i in range(6):
        make_image(tmp_path / "imgs" / f"{i}.png", seed=i)
    lines = ["path,label,split"] + [
        f"imgs/{i}.png,{'x' if i % 2 else 'y'},{'test' if i < 2 else 'train'}" for i in range(6)]
    (tmp_path / "given.csv").write_text("\n".join(lines) + "\n")
    s = build_datasets(DataConfig(name="csv", root=str(tmp_path / "given.csv"), image_size=8))
    assert s.classes == ["x", "y"] and (len(s.train), len(s.test)) == (4, 2)
    assert s.test.paths == [str(tmp_path / "imgs" / "0.png"), str(tmp_path / "imgs" / "1.png")]
    assert s.test.labels == [1, 0]
    unsplit = ["path,label"] + [f"imgs/{i}.png,{'x' if i % 2 else 'y'}" for i in range(6)]
    (tmp_path / "plain.csv").write_text("\n".join(unsplit) + "\n")
    s = build_datasets(DataConfig(name="csv", root=str(tmp_path / "plain.csv"), image_size=8,
                                  test_fraction=0.34))
    assert (len(s.train), len(s.test)) == (4, 2) and sorted(s.test.labels) == [0, 1]


@pytest.mark.parametrize(
    ("text", "needle"),
    [("file,label\na.png,x\n", "header"), ("path,label,split\na.png,x,val\n", r"bad\.csv:2"),
     ("path,label\na.png,\n", r"bad\.csv:2: empty")],
)
def test_csv_errors_name_the_line(tmp_path, text, needle):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(DataError, match=needle):
        build_datasets(DataConfig(name="csv", root=str(tmp_path / "bad.csv")))


def test_paper_dataset_needs_root():
    with pytest.raises(ConfigError, match=r"data\.root.*busi"):
        build_datasets(DataConfig(name="busi"))


def test_works_with_dataloader_workers(tmp_path, make_image):
    for c in ("a", "b"):
        for i in range(4):
            make_image(tmp_path / c / f"{i}.png", seed=i + (10 if c == "b" else 0))
    s = build_datasets(DataConfig(name="imagefolder", root=str(tmp_path), image_size=8,
                                  cache=True, test_fraction=0.25))
    loader = torch.utils.data.DataLoader(s.train, batch_size=3, num_workers=2)
    xs, ys = zip(*loader, strict=True)
    assert torch.cat(xs).shape == (6, 3, 8, 8)
    assert sorted(torch.cat(ys).tolist()) == [0, 0, 0, 1, 1, 1]
