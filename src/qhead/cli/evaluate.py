"""``qhead evaluate CHECKPOINT``: accuracy, macro-F1, per-class scores, confusion matrix.

Examples::

    qhead evaluate runs/dq/best.pt
    qhead evaluate runs/busi-q/best.pt --data-root ../shared/data/busi --shots 1000
    qhead evaluate runs/dq/best.pt --data max_per_class=20 --out reports/
    qhead evaluate runs/dq/best.pt --backend pennylane:default.qubit
"""

from __future__ import annotations

import argparse
import json

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a checkpoint (accuracy, macro-F1, per-class, confusion matrix)",
        description=(
            "Evaluate a checkpoint on its dataset's test split (or other data with the same "
            "classes). Writes <checkpoint>.eval[.shotsS].json, a confusion matrix CSV and "
            "PNG beside the checkpoint (or in --out)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples::", 1)[1],
    )
    parser.add_argument("checkpoint", help="best.pt / last.pt written by qhead train")
    parser.add_argument("--data", action="append", default=[], metavar="KEY=VALUE",
                        help="override the checkpoint's data config (repeatable), e.g. root=DIR")
    parser.add_argument("--data-root", help="shortcut for --data root=DIR")
    parser.add_argument("--split", default="test", choices=("test", "train"))
    parser.add_argument("--shots", type=int,
                        help="finite shots for the quantum head (default: exact expectations)")
    parser.add_argument("--shots-seed", type=int, default=0, help="seed of the shot sampling")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backend", metavar="pennylane[:DEVICE]",
                        help="run the quantum head on PennyLane (default.qubit) or "
                             "pennylane:<device>, e.g. pennylane:lightning.qubit "
                             "(default: qhead's simulator)")
    parser.add_argument("--out", help="folder for the result files (default: the checkpoint's)")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    return parser


def format_confusion(matrix: list[list[int]], classes: list[str]) -> str:
    """The confusion matrix as text: one row per true class, one column per predicted."""
    corner = "true \\ predicted"
    names = [str(c) for c in classes]
    first = max(len(corner), *(len(c) for c in names))
    width = max(3, *(len(c) for c in names), *(len(str(v)) for row in matrix for v in row))
    lines = [f"{corner:<{first}}  " + "  ".join(f"{c:>{width}}" for c in names)]
    for name, row in zip(names, matrix, strict=True):
        lines.append(f"{name:<{first}}  " + "  ".join(f"{v:>{width}d}" for v in row))
    return "\n".join(lines)


def format_result(result: dict) -> str:
    """The per-class table, the confusion matrix and the headline metrics, as printed by
    ``qhead evaluate``."""
    lines = []
    width = max(8, *(len(c) for c in result["classes"]))
    lines.append(f"{'class':<{width}}  precision  recall     f1  support")
    for name, scores in result["per_class"].items():
        lines.append(
            f"{name:<{width}}  {scores['precision']:9.4f}  {scores['recall']:6.4f}  "
            f"{scores['f1']:5.4f}  {scores['support']:7d}"
        )
    lines.append("")
    lines.append(format_confusion(result["confusion_matrix"], result["classes"]))
    shots = "exact" if result["shots"] is None else f"{result['shots']} shots"
    if result.get("backend") not in (None, "torch"):
        shots += f", backend {result['backend']}"
    lines.append(
        f"{result['split']} split, n={result['n']}, {shots}: accuracy {result['accuracy']:.4f}, "
        f"macro-F1 {result['macro_f1']:.4f}, loss {result['loss']:.4f}"
    )
    if result.get("files"):
        lines.append(f"wrote {result['files']['json']} (+ confusion .csv/.png)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from qhead.engine import evaluate

    result = evaluate(
        args.checkpoint, data=args.data, data_root=args.data_root, split=args.split,
        shots=args.shots, shots_seed=args.shots_seed, batch_size=args.batch_size,
        device=args.device, out=args.out, backend=args.backend,
    )
    print(json.dumps(result, indent=2) if args.json else format_result(result))
    return 0
