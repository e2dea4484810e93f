"""``qhead audit DIR|MANIFEST``: exact/near-duplicate images and train/test leakage."""

from __future__ import annotations

import argparse
from pathlib import Path

from qhead.data.audit import (
    DEFAULT_HASH_SIZE,
    DEFAULT_THRESHOLD,
    audit,
    report_json,
    report_markdown,
)
from qhead.dataspec import spec_names


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "audit",
        help="find exact and near-duplicate images and train/test leakage",
        description="Audits a prepared folder or manifest.csv, a path,label[,split] CSV, a "
                    "paper dataset's raw folder, or an image folder: exact duplicates "
                    "(decoded pixels), near-duplicates (perceptual hash), within and across "
                    "classes and splits, and test images duplicated in train.",
    )
    parser.add_argument("target", help="folder, manifest.csv or CSV to audit")
    parser.add_argument("--dataset", choices=(*spec_names(), "imagefolder"),
                        help="how to read a raw folder (default: detected)")
    parser.add_argument("--threshold", type=int, default=DEFAULT_THRESHOLD,
                        help="largest perceptual-hash Hamming distance counted as a "
                             f"near-duplicate (default: {DEFAULT_THRESHOLD})")
    parser.add_argument("--hash-size", type=int, default=DEFAULT_HASH_SIZE,
                        help=f"perceptual hash side, hash_size² bits (default: "
                             f"{DEFAULT_HASH_SIZE})")
    parser.add_argument("--format", choices=("md", "json"), default="md",
                        help="what to print (default: md)")
    parser.add_argument("--out", help="also write OUT/audit.md and OUT/audit.json")
    parser.add_argument("--max-items", type=int, default=20,
                        help="examples listed per section in Markdown (default: 20)")
    parser.add_argument("--fail-on-leak", action="store_true",
                        help="exit with status 3 if a test image has a duplicate in train")
    return parser


def run(args: argparse.Namespace) -> int:
    report = audit(args.target, dataset=args.dataset, threshold=args.threshold,
                   hash_size=args.hash_size)
    markdown = report_markdown(report, max_items=args.max_items)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        markdown = report_markdown(report, max_items=args.max_items,
                                   more_hint=f"all of them in {out / 'audit.json'}")
        (out / "audit.md").write_text(markdown, encoding="utf-8")
        (out / "audit.json").write_text(report_json(report), encoding="utf-8")
    print(report_json(report) if args.format == "json" else markdown, end="")
    if args.fail_on_leak and report["summary"]["leaked_test_images"]:
        return 3
    return 0
