"""``qhead prepare DATASET SOURCE --out DIR``: apply a paper dataset's split protocol."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from qhead.data.archive import DEFAULT_MAX_BYTES, source_folder
from qhead.data.config import SPLIT_PROTOCOLS
from qhead.data.prepare import SUMMARY_JSON, prepare, write_prepared
from qhead.dataspec import spec_names
from qhead.errors import DataError


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "prepare",
        help="prepare one of the paper's datasets (split manifest + summary) from its "
             "publisher's layout",
        description="Reads a paper dataset in the layout its publisher distributes (a folder "
                    "or the archive itself: .zip, .tar, .tar.gz, .tgz; never downloads), "
                    "applies its protocol and writes OUT/manifest.csv and "
                    "OUT/summary.{json,md}. The images stay where they are: the manifest "
                    "points at a source folder (relative paths); they are copied into "
                    "OUT/images/ only for an archive or with --copy. See docs/data.md.",
    )
    parser.add_argument("dataset", choices=spec_names(), help="which paper dataset")
    parser.add_argument("source", help="the publisher's folder or archive")
    parser.add_argument("--out", required=True, help="output folder (new, empty, or an "
                                                     "earlier preparation to overwrite)")
    parser.add_argument("--seed", type=int, default=0,
                        help="split seed for busi and croatian-fish (default: 0)")
    parser.add_argument("--split", choices=SPLIT_PROTOCOLS, default="paper",
                        help="split protocol: 'paper' (default) or 'grouped' (near-duplicate "
                             "clusters kept inside one split, cross-class clusters dropped; "
                             "busi and croatian-fish)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="drop unreadable images (listed in the summary) instead of failing")
    images = parser.add_mutually_exclusive_group()
    images.add_argument("--copy", action="store_true",
                        help="copy the kept images into OUT/images/ (a self-contained folder); "
                             "always done for an archive, whose extraction is temporary")
    images.add_argument("--no-copy", action="store_true",
                        help="leave the images in the source folder (the default for a "
                             "folder; refused for an archive)")
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES,
                        help="limit on an archive's uncompressed size (default: 8 GiB)")
    return parser


def run(args: argparse.Namespace) -> int:
    is_folder = Path(args.source).is_dir()
    if args.no_copy and not is_folder:
        raise DataError(f"--no-copy needs a source folder, not {args.source} (an archive is "
                        "extracted to a temporary folder, so its images must be copied)")
    copy = args.copy or not is_folder
    with source_folder(args.source, max_bytes=args.max_bytes) as folder:
        prepared = prepare(args.dataset, folder, seed=args.seed, skip_bad=args.skip_bad,
                           split=args.split)
        manifest = write_prepared(prepared, args.out, source_label=str(args.source),
                                  copy_images=copy)
    out = Path(args.out)
    summary = json.loads((out / SUMMARY_JSON).read_text(encoding="utf-8"))
    observed = summary["observed"]
    print(f"{args.dataset} (split {args.split}): {observed['total']} images, "
          f"{observed['classes']} classes, train {observed['train']} / test {observed['test']} "
          f"(seed {args.seed})")
    for item in summary["dropped"]:
        print(f"  dropped {item['path']}: {item['reason']}")
    grouping = summary.get("grouping")
    if grouping:
        print(f"  grouped: {grouping['clusters']} clusters ({grouping['hash']}, Hamming "
              f"distance <= {grouping['threshold']}), "
              f"{len(grouping['cross_class_clusters'])} cross-class clusters dropped "
              f"({grouping['dropped_cross_class_images']} images)")
    elif not summary["matches_paper"]:
        print(f"  note: the paper's counts are {summary['paper']}; this source differs")
    if copy:
        print(f"images: copied to {out / 'images'}")
    else:
        print(f"images: left in place in {Path(args.source).resolve()} (not copied; the "
              f"manifest's paths are relative to {out}, so keep both where they are, or "
              "prepare with --copy)")
    print(f"wrote {manifest} and {out / 'summary.md'}")
    return 0
