"""Decoding image files to RGB tensors, and the torch ``Dataset`` classes.

Every image goes through the same steps, at train, test and predict time:

1. read the file's bytes (optionally checking its sha256 against a manifest);
2. decode with PIL (``Image.open`` + ``load``: truncated or corrupt files fail here);
3. crop ``crop_bottom`` pixel rows off the stored image (FGVC-Aircraft's banner);
4. apply the EXIF orientation (``ImageOps.exif_transpose``);
5. convert to 8-bit RGB: ``L``/``1``/``P``/``CMYK``/``YCbCr`` via PIL; 16-bit and 32-bit
   greyscale (``I;16*``, ``I``) scaled from the 16-bit range (``value / 257``, not
   per-image min-max, so that equal grey levels stay equal across files); ``F`` clipped
   to [0, 255]; images with transparency (``RGBA``, ``LA``, ``PA``, ``P`` with a
   transparent colour) composited over black;
6. resize (squash, no crop) to ``image_size × image_size`` with PIL's antialiased
   bilinear filter → ``uint8 [3, H, W]`` (what the optional cache keeps);
7. train split only: random horizontal flip (p = 0.5) if enabled;
8. ``float32`` in [0, 1], then ImageNet mean/std normalisation (or none).
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset

from qhead.errors import DataError

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: File name suffixes (lower case) treated as images when scanning folders.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)


def is_image_file(path: Path) -> bool:
    """Whether a scanned file counts as an image (by suffix; hidden files never do)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pixel_sha256(img: Image.Image) -> str:
    """Hex sha256 of an RGB image's size and decoded pixels (equal for equal images,
    whatever their file format, compression or metadata)."""
    rgb = _to_rgb(img)
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    digest.update(rgb.tobytes())
    return digest.hexdigest()


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(img).astype(np.float64)
        arr = np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if mode == "F":
        arr = np.clip(np.rint(np.asarray(img, dtype=np.float64)), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def decode_image(
    source: str | Path | bytes,
    *,
    name: str | None = None,
    crop_bottom: int = 0,
    expected_sha256: str | None = None,
) -> Image.Image:
    """Decodes an image file to an 8-bit RGB PIL image (steps 1–5 of the module doc).

    Args:
        source: a file path, or the file's bytes.
        name: how to name the file in error messages (defaults to the path).
        crop_bottom: pixel rows removed from the bottom of the stored image.
        expected_sha256: if given, the file's sha256 must match.

    Returns:
        an ``RGB`` image, EXIF orientation applied.

    Raises:
        DataError: naming the file, if it is missing, empty, not an image, corrupt,
            truncated, has a different sha256, or is too small to crop.
    """
    if isinstance(source, bytes):
        data = source
        label = name or "<bytes>"
    else:
        label = name or str(source)
        try:
            data = Path(source).read_bytes()
        except OSError as error:
            raise DataError(f"cannot read image file {label}: {error.strerror or error}") from None
    if not data:
        raise DataError(f"image file {label} is empty (0 bytes)")
    if expected_sha256 is not None and hashlib.sha256(data).hexdigest() != expected_sha256:
        raise DataError(
            f"image file {label} does not match the sha256 recorded in the manifest "
            "(file changed since `qhead prepare`; re-prepare or set data.verify_sha256=false)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            img.load()
            if crop_bottom:
                if img.height <= crop_bottom:
                    raise DataError(
                        f"image file {label} is {img.height} px high, too small to crop "
                        f"{crop_bottom} px off the bottom"
                    )
                img = img.crop((0, 0, img.width, img.height - crop_bottom))
            img = ImageOps.exif_transpose(img)
            return _to_rgb(img)
    except DataError:
        raise
    except UnidentifiedImageError:
        raise DataError(f"{label} is not a readable image file (unknown format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DataError(f"image file {label} is too large to decode safely: {error}") from None
    except (OSError, SyntaxError, ValueError, TypeError, EOFError) as error:
        raise DataError(f"image file {label} is corrupt or truncated: {error}") from None


def resize_to_tensor(img: Image.Image, image_size: int) -> torch.Tensor:
    """Resizes an RGB image to a square ``uint8`` tensor ``[3, S, S]`` (S = image_size)."""
    if img.size != (image_size, image_size):
        img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def normalize_tensor(x: torch.Tensor, normalize: str) -> torch.Tensor:
    """Values in [0, 255] ``[..., 3, H, W]`` → normalised ``float32 [..., 3, H, W]``."""
    out = x.to(torch.float32) / 255.0
    if normalize == "imagenet":
        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)
        out = (out - mean) / std
    elif normalize != "none":
        raise DataError(f"unknown normalisation {normalize!r}; allowed: imagenet, none")
    return out


def load_image(
    path: str | Path,
    image_size: int = 224,
    normalize: str = "imagenet",
    *,
    crop_bottom: int = 0,
) -> torch.Tensor:
    """The evaluation transform for one image file (used by ``qhead predict``).

    Args:
        path: any image file PIL can read.
        image_size: output side length S.
        normalize: ``imagenet`` or ``none``.
        crop_bottom: pixel rows removed from the bottom first.

    Returns:
        ``float32 [3, S, S]``, normalised as the training data was.

    Raises:
        DataError: naming the file, if it cannot be decoded.
    """
    img = decode_image(path, crop_bottom=crop_bottom)
    return normalize_tensor(resize_to_tensor(img, image_size), normalize)


class _Transform:
    """Shared tail of both dataset classes: flip (train) + normalise."""

    def __init__(self, *, train: bool, hflip: bool, normalize: str) -> None:
        self.train = train
        self.hflip = hflip
        self.normalize = normalize

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.train and self.hflip and bool(torch.rand(()) < 0.5):
            x = x.flip(-1)
        return normalize_tensor(x, self.normalize)


class _LabelledImages(Dataset):
    """Shared behaviour of both dataset classes.

    Subclasses set ``labels`` and ``transform`` and define ``decode(index)``, which returns
    the un-normalised ``[3, S, S]`` image in the 0–255 range.
    """

    labels: list[int]
    transform: _Transform

    def decode(self, index: int) -> torch.Tensor:
        raise NotImplementedError

    @property
    def train(self) -> bool:
        """Whether training augmentation (random flip) is applied; settable."""
        return self.transform.train

    @train.setter
    def train(self, value: bool) -> None:
        self.transform.train = bool(value)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.decode(index)), self.labels[index]


class ImageFileDataset(_LabelledImages):
    """Images read from files: items are ``(float32 [3, S, S] normalised, label int)``.

    Attributes:
        paths: absolute path of each item (``str``), for naming predictions and audits.
        labels: class index of each item.
        classes: class names, indexed by label.
        crop_bottom: per item, pixel rows cut off the bottom.
        sha256: per item, the expected sha256 (or ``None``: not checked).
    """

    def __init__(
        self,
        paths: Sequence[str],
        labels: Sequence[int],
        classes: Sequence[str],
        *,
        image_size: int,
        train: bool,
        hflip: bool = True,
        normalize: str = "imagenet",
        crop_bottom: Sequence[int] | None = None,
        sha256: Sequence[str | None] | None = None,
    ) -> None:
        self.paths = [str(p) for p in paths]
        self.labels = [int(v) for v in labels]
        self.classes = list(classes)
        self.image_size = image_size
        self.crop_bottom = list(crop_bottom) if crop_bottom is not None else [0] * len(self.paths)
        self.sha256 = list(sha256) if sha256 is not None else [None] * len(self.paths)
        self.transform = _Transform(train=train, hflip=hflip, normalize=normalize)
        self._cache: list[torch.Tensor] | None = None
        if not len(self.paths) == len(self.labels) == len(self.crop_bottom) == len(self.sha256):
            raise ValueError("paths, labels, crop_bottom and sha256 must have the same length")

    def decode(self, index: int) -> torch.Tensor:
        """The resized ``uint8 [3, S, S]`` image of item ``index`` (from the cache if filled)."""
        if self._cache is not None:
            return self._cache[index]
        img = decode_image(
            self.paths[index],
            crop_bottom=self.crop_bottom[index],
            expected_sha256=self.sha256[index],
        )
        return resize_to_tensor(img, self.image_size)

    def preload(self, *, cache: bool, skip_bad: bool) -> list[str]:
        """Decodes every image once (in this process, before any worker forks).

        Args:
            cache: keep the decoded ``uint8`` images in memory for later epochs.
            skip_bad: drop unreadable files (warning) instead of raising.

        Returns:
            the error message of each dropped file (names the file).

        Raises:
            DataError: the first unreadable file, when ``skip_bad`` is False.
        """
        kept: list[int] = []
        images: list[torch.Tensor] = []
        skipped: list[str] = []
        for i in range(len(self.paths)):
            try:
                tensor = self.decode(i)
            except DataError as error:
                if not skip_bad:
                    raise
                warnings.warn(f"skipping {error}", stacklevel=2)
                skipped.append(str(error))
                continue
            kept.append(i)
            if cache:
                images.append(tensor)
        if skipped:
            self.paths = [self.paths[i] for i in kept]
            self.labels = [self.labels[i] for i in kept]
            self.crop_bottom = [self.crop_bottom[i] for i in kept]
            self.sha256 = [self.sha256[i] for i in kept]
        if cache:
            self._cache = images
        return skipped


class TensorImageDataset(_LabelledImages):
    """Small images held in memory as ``uint8 [N, C, h, w]`` (C = 1 or 3), upsampled per item.

    Items are ``(float32 [3, S, S] normalised, label int)``: bilinear upsampling of one
    image at a time (no PIL), grey repeated to 3 channels.

    Attributes:
        paths: a name per item (``"digits[17]"``), for reports.
        labels: class index of each item.
        classes: class names.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: Sequence[int],
        classes: Sequence[str],
        *,
        image_size: int,
        train: bool,
        hflip: bool = True,
        normalize: str = "imagenet",
        names: Sequence[str] | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError("images must be uint8 [N, 1 or 3, h, w]")
        self.images = images
        self.labels = [int(v) for v in labels]
        self.classes = list(classes)
        self.image_size = image_size
        default = [f"item[{i}]" for i in range(len(images))]
        self.paths = list(names) if names is not None else default
        self.transform = _Transform(train=train, hflip=hflip, normalize=normalize)

    def decode(self, index: int) -> torch.Tensor:
        """The upsampled ``uint8``-range float image ``[3, S, S]`` of item ``index``."""
        x = self.images[index].to(torch.float32).unsqueeze(0)
        size = self.image_size
        if x.shape[-2:] != (size, size):
            x = torch.nn.functional.interpolate(
                x, size=(size, size), mode="bilinear", align_corners=False
            )
        x = x[0]
        if x.shape[0] == 1:
            x = x.expand(3, -1, -1)
        return x

