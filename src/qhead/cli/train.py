"""``qhead train``: train a model from a YAML config, a preset and dotted overrides.

Examples::

    qhead train --preset resnet18_q/busi data.root=../shared/data/busi epochs=5 image_size=64
    qhead train -c configs/digits_quantum.yaml --out runs/dq model.head_options.layers=2
    qhead train --out runs/dq --resume                 # continue an interrupted run
    qhead train --out runs/dq --resume epochs=30       # train a finished run for longer
    torchrun --nproc_per_node 2 -m qhead train -c configs/digits_quantum.yaml
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qhead.engine import TrainConfig

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="train a model (YAML config + preset + KEY=VALUE overrides)",
        description=(
            "Train a classifier. The config is resolved from the defaults (the paper's "
            "protocol: Adam, lr 1e-3, batch 32, 200 epochs, 224 px), then --preset, then "
            "-c FILE, then KEY=VALUE overrides (dotted keys: model.head_options.layers=2, "
            "data.root=DIR, epochs=5, image_size=64). The resolved config is saved as "
            "config.yaml in the run dir. Under torchrun it trains with DDP."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples::", 1)[1],
    )
    parser.add_argument("-c", "--config", type=Path, help="YAML config file")
    parser.add_argument("--preset", help="paper preset, e.g. resnet18_q/busi (qhead list)")
    parser.add_argument("--out", help="run directory (default runs/<dataset>-<backbone>-…)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from <out>/last.pt if present (start fresh otherwise); "
                             "without -c/--preset the run's own config.yaml is the base, "
                             "overrides such as epochs=N apply on top")
    parser.add_argument("--threads", type=int, help="CPU threads for PyTorch")
    parser.add_argument("--deterministic", action="store_true",
                        help="deterministic algorithms (bit-exact resume and reruns)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dotted config overrides")
    return parser


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """The :class:`~qhead.engine.TrainConfig` the arguments describe.

    ``--resume`` without ``-c``/``--preset`` starts from the run's own ``config.yaml``
    (in ``--out DIR``, or ``out=DIR``) and applies the overrides on top, e.g.
    ``--resume epochs=8`` to train a finished run for longer; the trainer refuses an
    override that changes the model or the data (see
    :data:`qhead.engine.config.RESUMABLE_KEYS`).
    """
    import yaml

    from qhead.engine import load_config
    from qhead.engine.record import CONFIG_FILE
    from qhead.errors import ConfigError
    from qhead.overrides import parse_overrides

    overrides = list(args.overrides)
    flags = []
    if args.out is not None:
        flags.append(f"out={args.out}")
    if args.threads is not None:
        flags.append(f"threads={args.threads}")
    if args.deterministic:
        flags.append("deterministic=true")
    if args.no_progress:
        flags.append("progress=false")
    base = None
    if args.resume and not (args.config or args.preset):
        out = args.out or parse_overrides(overrides).get("out")
        if out is None:
            raise ConfigError("--resume needs --out DIR (the run to continue) or the run's config")
        saved = Path(str(out)) / CONFIG_FILE
        if saved.is_file():
            base = yaml.safe_load(saved.read_text())
    return load_config(args.config, args.preset, [*overrides, *flags], base=base)


def run(args: argparse.Namespace) -> int:
    from qhead.engine import train

    cfg = resolve_config(args)
    train(cfg, resume=args.resume)
    return 0
