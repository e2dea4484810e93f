"""The ``qhead`` command line: one sub-command per module in this package.

Each module named in :data:`COMMANDS` defines

* ``register(subparsers) -> argparse.ArgumentParser``: adds its sub-parser, and
* ``run(args: argparse.Namespace) -> int``: does the work and returns the exit code.

Errors a user can fix (bad path, bad config value, unknown name) are raised as
:class:`qhead.errors.QheadError` (or a subclass) and printed as one line without a
traceback, exit status :data:`USER_ERROR`. Any other exception is a bug in qhead, not bad
input: it is reported as a one-line "internal error" (exit status :data:`INTERNAL_ERROR`)
that asks for ``--debug``, which shows the traceback (of either kind of error). A
sub-command module that fails to import is a bug too: ``qhead`` stops with its traceback
instead of leaving the command out.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from qhead.errors import QheadError
from qhead.memory import keep_freed_memory

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
    "noise",
    "resources",
    "export",
)


#: exit status of an error the user can fix (a :class:`~qhead.errors.QheadError`)
USER_ERROR = 1
#: exit status of a bug in qhead (any other exception; EX_SOFTWARE of sysexits.h)
INTERNAL_ERROR = 70


def build_parser() -> argparse.ArgumentParser:
    """The ``qhead`` parser with every sub-command of :data:`COMMANDS`.

    Raises:
        ImportError: a sub-command module does not import (a bug, never skipped).
    """
    parser = argparse.ArgumentParser(
        prog="qhead",
        description="Hybrid quantum-classical image classification (AE-VQC heads).",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMANDS:
        module = importlib.import_module(f"qhead.cli.{module_name}")
        sub = module.register(subparsers)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    keep_freed_memory()  # the command owns its process (see qhead.memory)
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
    except QheadError as error:
        if args.debug:
            raise
        print(f"qhead {args.command}: error: {error}", file=sys.stderr)
        return USER_ERROR
    except Exception as error:
        if args.debug:
            raise
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        print(f"qhead {args.command}: internal error ({type(error).__name__}"
              f"{': ' + first if first else ''}); this is a bug in qhead, not in your input: "
              "run the command again with --debug to see the traceback, and report it",
              file=sys.stderr)
        return INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
