"""``qhead list``: every registered name (backbones, heads, ansätze, datasets, presets)."""

from __future__ import annotations

import argparse
import importlib

__all__ = ["register", "run"]

# section → (module, registry attribute); a layer that is missing or broken is reported,
# not fatal, so `qhead list` works in a partial installation.
_SECTIONS: dict[str, tuple[str, str]] = {
    "backbones": ("qhead.models", "BACKBONES"),
    "heads": ("qhead.models", "HEADS"),
    "ansatze": ("qhead.quantum", "ANSATZES"),
    "datasets": ("qhead.data", "DATASETS"),
    "presets": ("qhead.models", "PRESETS"),
}


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "list",
        help="list registered backbones, heads, ansätze, datasets and model presets",
        description=__doc__,
    )
    parser.add_argument(
        "what",
        nargs="?",
        choices=sorted(_SECTIONS),
        help="only this registry (default: all)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    sections = [args.what] if getattr(args, "what", None) else list(_SECTIONS)
    for i, section in enumerate(sections):
        module_name, attr = _SECTIONS[section]
        if i:
            print()
        print(f"{section}:")
        try:
            registry = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as error:
            print(f"  (unavailable: {error})")
            continue
        names = registry.names()
        if section == "presets":
            from qhead.models import list_presets

            names = [n for n in list_presets() if n in registry] + [
                n for n in names if n not in set(list_presets())
            ]
        width = max((len(n) for n in names), default=0)
        if section == "backbones":
            width = max(width, len("timm:<name>"))
        if section == "heads":
            from qhead.models import CLASSICAL

            width = max(width, len(CLASSICAL))
            print(f"  {CLASSICAL.ljust(width)}  the backbone's own classical head "
                  "(resnet18: avg-linear, maxvit_t: maxvit-classical)")
        for name in names:
            print(f"  {name.ljust(width)}  {registry.describe(name)}".rstrip())
        if section == "backbones":
            print(f"  {'timm:<name>'.ljust(width)}  any timm model (when timm is installed)")
    return 0
