"""Near-duplicate machinery shared by the audit and the ``grouped`` split protocol.

* :func:`perceptual_hash`: ``imagehash.phash`` (DCT of the 32×32 grey image, keeps the
  ``hash_size × hash_size`` lowest frequencies, 1 bit each: above/below their median),
  as a flat bool vector of ``hash_size²`` bits;
* :func:`near_pairs`: every pair of hashes at Hamming distance ``<= threshold``;
* :func:`connected_components`: the clusters those pairs form (union-find).

``DEFAULT_THRESHOLD = 8`` of ``DEFAULT_HASH_SIZE² = 64`` bits is the rule measured on
BUSI (``docs/data.md``): every pair inspected up to distance 10 was the same scan, pairs
at 12 were different scans.
"""

from __future__ import annotations

from collections.abc import Iterable

import imagehash
import numpy as np
from PIL import Image

DEFAULT_THRESHOLD = 8
DEFAULT_HASH_SIZE = 8


def perceptual_hash(img: Image.Image, hash_size: int = DEFAULT_HASH_SIZE) -> np.ndarray:
    """The perceptual hash of a decoded image, ``bool [hash_size²]``."""
    return imagehash.phash(img, hash_size=hash_size).hash.reshape(-1)


def near_pairs(bits: np.ndarray, threshold: int) -> list[tuple[int, int, int]]:
    """Pairs ``(i, j, d)``, ``i < j``, of rows of ``bits`` (bool ``[N, K]``) at Hamming
    distance ``d <= threshold``, in row-major order."""
    packed = np.packbits(bits, axis=1)  # [N, K/8] uint8
    table = np.array([bin(v).count("1") for v in range(256)], dtype=np.uint8)
    out: list[tuple[int, int, int]] = []
    n = len(packed)
    # blocks of rows against all rows: bounded memory (~4 MiB of uint8 per block)
    chunk = max(1, 2**22 // max(1, n * packed.shape[1]))
    for start in range(0, n, chunk):
        block = packed[start:start + chunk]
        dist = table[block[:, None, :] ^ packed[None, :, :]].sum(axis=2, dtype=np.int32)
        rows, cols = np.nonzero(dist <= threshold)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            i = start + r
            if i < c:
                out.append((i, c, int(dist[r, c])))
    return out


def connected_components(n: int, edges: Iterable[tuple[int, int]]) -> list[int]:
    """Component root of each of ``n`` nodes joined by ``edges`` (union-find).

    Returns:
        ``root[k]``: the smallest node index of ``k``'s component, so equal roots mean the
        same component and the labelling does not depend on the order of ``edges``.
    """
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return [find(k) for k in range(n)]
