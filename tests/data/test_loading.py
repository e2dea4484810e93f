from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from qhead.data import DataConfig, build_datasets, decode_image, load_image
from qhead.data.loading import IMAGENET_MEAN, IMAGENET_STD, pixel_sha256, sha256_file
from qhead.errors import DataError


def rgb(path, **kw) -> np.ndarray:
    return np.asarray(decode_image(path, **kw))


def test_grayscale_l_and_bilevel(tmp_path):
    Image.fromarray(np.array([[0, 77], [200, 255]], np.uint8), "L").save(tmp_path / "l.png")
    out = rgb(tmp_path / "l.png")
    assert out.shape == (2, 2, 3)
    assert np.array_equal(out[..., 0], [[0, 77], [200, 255]])
    assert np.array_equal(out[..., 0], out[..., 2])
    Image.fromarray(np.array([[0, 255]], np.uint8), "L").convert("1").save(tmp_path / "b.png")
    assert np.array_equal(rgb(tmp_path / "b.png")[..., 1], [[0, 255]])


def test_sixteen_bit_png_scaled_from_full_range(tmp_path):
    values = np.array([[0, 257 * 128, 65535, 1000]], np.uint16)
    Image.fromarray(values).save(tmp_path / "i16.png")
    assert Image.open(tmp_path / "i16.png").mode in ("I;16", "I")  # really 16-bit on disk
    out = rgb(tmp_path / "i16.png")
    assert np.array_equal(out[0, :, 0], [0, 128, 255, round(1000 / 257)])


def test_rgba_and_la_composited_over_black(tmp_path):
    arr = np.array([[[200, 100, 50, 255], [200, 100, 50, 0], [200, 100, 50, 128]]], np.uint8)
    Image.fromarray(arr, "RGBA").save(tmp_path / "a.png")
    out = rgb(tmp_path / "a.png").astype(int)
    assert out[0, 0].tolist() == [200, 100, 50]
    assert out[0, 1].tolist() == [0, 0, 0]
    assert np.allclose(out[0, 2], [100, 50, 25], atol=1)
    la = np.array([[[90, 255], [90, 0]]], np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert rgb(tmp_path / "la.png")[0, :, 0].tolist() == [90, 0]


def test_palette_with_and_without_transparency(tmp_path):
    img = Image.new("P", (2, 1))
    img.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    img.putpixel((0, 0), 0)
    img.putpixel((1, 0), 1)
    img.save(tmp_path / "p.png")
    assert rgb(tmp_path / "p.png")[0].tolist() == [[255, 0, 0], [0, 255, 0]]
    img.save(tmp_path / "pt.png", transparency=1)
    assert rgb(tmp_path / "pt.png")[0].tolist() == [[255, 0, 0], [0, 0, 0]]


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=95)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    out = rgb(tmp_path / "c.jpg").astype(int)
    assert np.allclose(out.reshape(-1, 3).mean(0), [255, 0, 0], atol=6)


def test_exif_rotated_jpeg(tmp_path):
    arr = np.zeros((16, 32, 3), np.uint8)
    arr[:, :16] = 255  # left half white as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90° clockwise
    Image.fromarray(arr).save(tmp_path / "r.jpg", exif=exif, quality=95)
    out = rgb(tmp_path / "r.jpg").astype(int)
    assert out.shape == (32, 16, 3)  # width and height swapped
    assert out[:16].mean() > 200 and out[16:].mean() < 50  # stored left → displayed top


def test_crop_bottom(tmp_path):
    arr = np.zeros((30, 8, 3), np.uint8)
    arr[-20:] = 255  # the "banner"
    Image.fromarray(arr).save(tmp_path / "x.png")
    out = rgb(tmp_path / "x.png", crop_bottom=20)
    assert out.shape == (10, 8, 3) and out.max() == 0
    with pytest.raises(DataError, match=r"x\.png.*too small"):
        decode_image(tmp_path / "x.png", crop_bottom=30)


def test_load_image_matches_manual_pipeline(tmp_path, make_image):
    path = make_image(tmp_path / "im.png", seed=3, size=(40, 30))
    x = load_image(path, image_size=16)
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    ref = Image.open(path).convert("RGB").resize((16, 16), Image.Resampling.BILINEAR)
    ref = torch.from_numpy(np.asarray(ref).copy()).permute(2, 0, 1).float() / 255
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert torch.allclose(x, (ref - mean) / std, atol=1e-6)
    assert torch.allclose(load_image(path, 16, "none"), ref, atol=1e-6)


def _truncated_png(path, make_image):
    make_image(path, seed=9, size=(64, 64), noise=40)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("kind", ["empty", "text", "truncated_png", "truncated_jpg", "garbage",
                                  "missing"])
def test_bad_files_raise_data_error_naming_file(tmp_path, make_image, kind):
    path = tmp_path / f"bad_{kind}.png"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("hello, I am not an image")
    elif kind == "truncated_png":
        _truncated_png(path, make_image)
    elif kind == "truncated_jpg":
        path = make_image(tmp_path / "bad_truncated.jpg", seed=1, size=(64, 64), noise=40)
        path.write_bytes(path.read_bytes()[:300])
    elif kind == "garbage":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(DataError, match=path.name.replace(".", r"\.")):
        load_image(path)


def test_sha256_mismatch_is_an_error(tmp_path, make_image):
    path = make_image(tmp_path / "a.png", seed=1)
    good = sha256_file(path)
    decode_image(path, expected_sha256=good)
    with pytest.raises(DataError, match=r"a\.png.*sha256"):
        decode_image(path, expected_sha256="0" * 64)


def test_pixel_hash_ignores_encoding(tmp_path, make_image):
    a = make_image(tmp_path / "a.png", seed=5)
    Image.open(a).save(tmp_path / "b.bmp")
    Image.open(a).save(tmp_path / "c.png", compress_level=0)
    hashes = {pixel_sha256(decode_image(p)) for p in (a, tmp_path / "b.bmp", tmp_path / "c.png")}
    assert len(hashes) == 1
    assert pixel_sha256(decode_image(make_image(tmp_path / "d.png", seed=6))) not in hashes


def _folder_with_bad_file(tmp_path, make_image):
    for c in ("a", "b"):
        for i in range(5):
            offset = 7 if c == "b" else 0
            make_image(tmp_path / "train" / c / f"{i}.png", seed=10 + i + offset)
            make_image(tmp_path / "test" / c / f"{i}.png", seed=100 + i + offset)
    bad = tmp_path / "train" / "a" / "2.png"
    bad.write_bytes(b"")
    return bad


def test_bad_file_in_dataset_raises_lazily_or_is_skipped(tmp_path, make_image):
    bad = _folder_with_bad_file(tmp_path, make_image)
    splits = build_datasets(DataConfig(name="imagefolder", root=str(tmp_path), image_size=8))
    index = splits.train.paths.index(str(bad))
    with pytest.raises(DataError, match=r"2\.png"):
        splits.train[index]
    with pytest.raises(DataError, match=r"2\.png"):
        build_datasets(DataConfig(name="imagefolder", root=str(tmp_path), image_size=8,
                                  cache=True))
    with pytest.warns(UserWarning, match=r"2\.png"):
        skipping = build_datasets(DataConfig(name="imagefolder", root=str(tmp_path),
                                             image_size=8, skip_bad=True))
    assert len(skipping.skipped) == 1 and "2.png" in skipping.skipped[0]
    assert len(skipping.train) == 9 and str(bad) not in skipping.train.paths
    # every remaining item keeps the label of its own folder (no shift after the drop)
    for path, label in zip(skipping.train.paths, skipping.train.labels, strict=True):
        assert path.split("/")[-2] == skipping.classes[label]


def test_cache_decodes_once(tmp_path, make_image):
    for c in ("a", "b"):
        for i in range(3):
            make_image(tmp_path / c / f"{i}.png", seed=i + (10 if c == "b" else 0))
    splits = build_datasets(DataConfig(name="imagefolder", root=str(tmp_path), image_size=8,
                                       cache=True, hflip=False, test_fraction=0.34))
    before = [splits.train[i][0] for i in range(len(splits.train))]
    for c in ("a", "b"):  # files gone: only the cache can serve the images now
        for i in range(3):
            (tmp_path / c / f"{i}.png").unlink()
    after = [splits.train[i][0] for i in range(len(splits.train))]
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert splits.train.decode(0).dtype == torch.uint8


def test_32_bit_integer_and_float_tiff(tmp_path):
    Image.fromarray(np.array([[0, 257 * 200, 65535]], np.int32), "I").save(tmp_path / "i.tif")
    assert Image.open(tmp_path / "i.tif").mode == "I"
    assert rgb(tmp_path / "i.tif")[0, :, 2].tolist() == [0, 200, 255]
    Image.fromarray(np.array([[-5.0, 100.4, 300.0]], np.float32), "F").save(tmp_path / "f.tif")
    assert Image.open(tmp_path / "f.tif").mode == "F"
    assert rgb(tmp_path / "f.tif")[0, :, 0].tolist() == [0, 100, 255]
