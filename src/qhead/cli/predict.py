"""``qhead predict CHECKPOINT IMAGES...|DIR``: class and probabilities per image, as CSV.

Examples::

    qhead predict runs/busi-q/best.pt scan1.png scan2.png
    qhead predict runs/busi-q/best.pt new_scans/ --out preds.csv
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "predict",
        help="predict image files with a checkpoint (CSV: path, class, probabilities)",
        description=(
            "Predict the class of image files (folders are searched recursively). Writes "
            "CSV rows: path, status, predicted, confidence, prob_<class>..., error. "
            "Unreadable files are reported on stderr and marked status=error; the others "
            "are still predicted (exit status 1 if any file failed)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples::", 1)[1],
    )
    parser.add_argument("checkpoint", help="best.pt / last.pt written by qhead train")
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    parser.add_argument("--out", help="CSV file to write (default: print the CSV)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backend", metavar="pennylane[:DEVICE]",
                        help="run the quantum head on PennyLane (default.qubit) or "
                             "pennylane:<device> (default: qhead's simulator)")
    return parser


def run(args: argparse.Namespace) -> int:
    from qhead.engine import predict, predictions_csv

    rows = predict(args.checkpoint, args.inputs, out=args.out, batch_size=args.batch_size,
                   device=args.device, backend=args.backend)
    failed = sum(r["status"] != "ok" for r in rows)
    if args.out is None:
        ok = [r for r in rows if r["status"] == "ok"]
        classes = [k[len("prob_"):] for k in ok[0] if k.startswith("prob_")] if ok else []
        sys.stdout.write(predictions_csv(rows, classes))
    else:
        print(f"wrote {args.out}: {len(rows) - failed} predicted, {failed} unreadable")
    return 1 if failed else 0
