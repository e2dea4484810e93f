"""The ``qhead`` command line: one sub-command per module in this package.

Each module named in :data:`COMMANDS` defines

* ``register(subparsers) -> argparse.ArgumentParser``: adds its sub-parser, and
* ``run(args: argparse.Namespace) -> int``: does the work and returns the exit code.

Errors a user can fix (bad path, bad config value, unknown name) are raised as
:class:`qhead.errors.QheadError` (or ``ValueError``/``FileNotFoundError`` with a clear
message) and printed as one line without a traceback; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from qhead.errors import QheadError

# module name -> sub-command name(s) it registers (modules may register several).
COMMANDS: tuple[str, ...] = (
    "list_cmd",
    "params",
    "describe",
    "prepare",
    "audit",
    "train",
    "evaluate",
    "predict",
    "demo",
    "reproduce",
    "report",
    "export_records",
    "shots",
    "resources",
    "export",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qhead",
        description="Hybrid quantum-classical image classification (AE-VQC heads).",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMANDS:
        try:
            module = importlib.import_module(f"qhead.cli.{module_name}")
        except ModuleNotFoundError as error:
            if error.name == f"qhead.cli.{module_name}":
                continue  # command not built yet
            raise
        sub = module.register(subparsers)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (QheadError, ValueError, FileNotFoundError, KeyError) as error:
        if args.debug:
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"qhead {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
