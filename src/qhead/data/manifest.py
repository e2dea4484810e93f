"""The split manifest written by ``qhead prepare`` and read by the ``manifest`` dataset.

``manifest.csv`` is UTF-8 CSV with a header and ``\\n`` line ends, one row per image,
sorted by path::

    path,label,split,sha256,crop_bottom
    images/Dataset_BUSI_with_GT/benign/benign (1).png,benign,train,1f0c…,0

* ``path``: relative to the folder holding ``manifest.csv`` (``/`` separators);
* ``label``: class name (classes are the sorted distinct labels);
* ``split``: ``train`` or ``test``;
* ``sha256``: hex sha256 of the file's bytes (checked when the file is read);
* ``crop_bottom``: pixel rows cut off the bottom of the stored image at load time
  (20 for FGVC-Aircraft's copyright banner, else 0);
* ``cluster`` (only in manifests of the ``grouped`` split protocol): the id of the image's
  near-duplicate cluster (``c001`` …); every member of a cluster is in the same split.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from qhead.errors import DataError

MANIFEST_NAME = "manifest.csv"
MANIFEST_COLUMNS: tuple[str, ...] = ("path", "label", "split", "sha256", "crop_bottom")
CLUSTER_COLUMN = "cluster"
SPLITS: tuple[str, ...] = ("train", "test")


@dataclass(frozen=True)
class ManifestRow:
    """One image of a manifest (``path`` relative to the manifest's folder)."""

    path: str
    label: str
    split: str
    sha256: str
    crop_bottom: int = 0
    cluster: str = ""


def manifest_text(rows: list[ManifestRow]) -> str:
    """The manifest's exact text (rows sorted by path, so re-runs are byte-identical);
    the ``cluster`` column is written when a row has a cluster id."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    clusters = any(row.cluster for row in rows)
    writer.writerow((*MANIFEST_COLUMNS, CLUSTER_COLUMN) if clusters else MANIFEST_COLUMNS)
    for row in sorted(rows, key=lambda r: r.path):
        fields = [row.path, row.label, row.split, row.sha256, row.crop_bottom]
        writer.writerow([*fields, row.cluster] if clusters else fields)
    return out.getvalue()


def write_manifest(rows: list[ManifestRow], folder: str | Path) -> Path:
    """Writes ``folder/manifest.csv`` and returns its path."""
    path = Path(folder) / MANIFEST_NAME
    path.write_bytes(manifest_text(rows).encode("utf-8"))
    return path


def resolve_manifest(location: str | Path) -> Path:
    """``manifest.csv`` itself, or the one inside a folder.

    Raises:
        DataError: if there is none.
    """
    path = Path(location)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise DataError(f"no manifest at {path} (write one with `qhead prepare`)")
    return path


def read_manifest(location: str | Path) -> list[ManifestRow]:
    """Reads and validates a manifest (a ``manifest.csv`` file or its folder).

    Raises:
        DataError: naming the file and line, for a missing column, an unknown split,
            an empty path or label, or a bad ``crop_bottom``.
    """
    path = resolve_manifest(location)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read manifest {path}: {error}") from None
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [c for c in ("path", "label", "split", "sha256") if c not in header]
    if missing:
        raise DataError(
            f"manifest {path} lacks column(s) {', '.join(missing)}; "
            f"expected header: {','.join(MANIFEST_COLUMNS)}"
        )
    rows: list[ManifestRow] = []
    for line, record in enumerate(reader, start=2):
        where = f"{path}:{line}"
        if not record.get("path") or not record.get("label"):
            raise DataError(f"{where}: empty path or label")
        if record["split"] not in SPLITS:
            raise DataError(f"{where}: split {record['split']!r}; allowed: train, test")
        crop = record.get("crop_bottom") or "0"
        try:
            crop_bottom = int(crop)
            if crop_bottom < 0:
                raise ValueError
        except ValueError:
            raise DataError(f"{where}: crop_bottom {crop!r} must be an integer >= 0") from None
        rows.append(
            ManifestRow(record["path"], record["label"], record["split"],
                        record["sha256"], crop_bottom, record.get(CLUSTER_COLUMN) or "")
        )
    if not rows:
        raise DataError(f"manifest {path} has no rows")
    return rows
