"""``qhead prepare DATASET SOURCE --out DIR``: apply a paper dataset's split protocol."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from qhead.data.archive import DEFAULT_MAX_BYTES, source_folder
from qhead.data.prepare import PAPER_DATASETS, SUMMARY_JSON, prepare, write_prepared
from qhead.errors import DataError


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "prepare",
        help="prepare one of the paper's datasets (split manifest + summary) from its "
             "publisher's layout",
        description="Reads a paper dataset in the layout its publisher distributes (a folder "
                    "or the archive itself: .zip, .tar, .tar.gz, .tgz; never downloads), "
                    "applies its protocol and writes OUT/manifest.csv, OUT/summary.{json,md} "
                    "and OUT/images/ (copies of the kept images). See docs/data.md.",
    )
    parser.add_argument("dataset", choices=PAPER_DATASETS, help="which paper dataset")
    parser.add_argument("source", help="the publisher's folder or archive")
    parser.add_argument("--out", required=True, help="output folder (new, empty, or an "
                                                     "earlier preparation to overwrite)")
    parser.add_argument("--seed", type=int, default=0,
                        help="split seed for busi and croatian-fish (default: 0)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="drop unreadable images (listed in the summary) instead of failing")
    parser.add_argument("--no-copy", action="store_true",
                        help="do not copy the images into OUT/images: the manifest points to "
                             "the source folder (relative paths; folders only, not archives)")
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES,
                        help="limit on an archive's uncompressed size (default: 8 GiB)")
    return parser


def run(args: argparse.Namespace) -> int:
    if args.no_copy and not Path(args.source).is_dir():
        raise DataError(f"--no-copy needs a source folder, not {args.source}")
    with source_folder(args.source, max_bytes=args.max_bytes) as folder:
        prepared = prepare(args.dataset, folder, seed=args.seed, skip_bad=args.skip_bad)
        manifest = write_prepared(prepared, args.out, source_label=str(args.source),
                                  copy_images=not args.no_copy)
    summary = json.loads((Path(args.out) / SUMMARY_JSON).read_text(encoding="utf-8"))
    observed = summary["observed"]
    print(f"{args.dataset}: {observed['total']} images, {observed['classes']} classes, "
          f"train {observed['train']} / test {observed['test']} (seed {args.seed})")
    for item in summary["dropped"]:
        print(f"  dropped {item['path']}: {item['reason']}")
    if not summary["matches_paper"]:
        print(f"  note: the paper's counts are {summary['paper']}; this source differs")
    print(f"wrote {manifest} and {Path(args.out) / 'summary.md'}")
    return 0
