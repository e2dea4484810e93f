"""The one parser of dotted ``key=value`` overrides (command line, grids, option flags).

Every place that takes ``key=value`` text reads it here: ``qhead train`` overrides
(:func:`qhead.engine.load_config`), ``qhead evaluate --data``, ``qhead reproduce``
overrides and the grid's recorded overrides, and ``--head-option`` /
``--backbone-option``. A value is read as YAML (``5`` → 5, ``true`` → True,
``[4,8,8]`` → a list, ``null`` → None) with one fix over PyYAML's YAML 1.1: floats
written without a dot, such as ``1e-3``, are floats (as in YAML 1.2 and OmegaConf), not
strings. Text that is not valid YAML stays the string it was::

    parse_overrides(["epochs=5", "model.head_options.layers=2", "lr=1e-3"])
    # {"epochs": 5, "model.head_options.layers": 2, "lr": 0.001}
    nest(_)  # {"epochs": 5, "model": {"head_options": {"layers": 2}}, "lr": 0.001}
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from qhead.errors import ConfigError

__all__ = [
    "flatten",
    "format_override",
    "nest",
    "parse_override",
    "parse_override_value",
    "parse_overrides",
    "set_nested",
]


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that reads ``1e-3`` / ``2E5`` as floats and dates as strings
    (as OmegaConf does: a config value is never a ``datetime``)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.VERBOSE,
    ),
    list("-+0123456789."),
)


def parse_override_value(text: str) -> Any:
    """The YAML-typed value of an override (``"50"`` → 50, ``"1e-3"`` → 0.001); text
    that is not valid YAML is returned unchanged, and an empty value is ``None``."""
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader: builds plain data only
    except yaml.YAMLError:
        return text


EXAMPLE = "(dotted.key=value), e.g. epochs=5 or model.head_options.layers=2"


def parse_override(item: str, *, what: str = "override", example: str = EXAMPLE
                   ) -> tuple[str, Any]:
    """``"model.head_options.layers=2"`` → ``("model.head_options.layers", 2)``.

    Args:
        item: ``KEY=VALUE``; the key is dotted, the value YAML (see the module docstring).
        what: how the error names the item's source (``"override"``, ``"--head-option"``).
        example: what the error shows as the expected form after ``expected KEY=VALUE``.

    Raises:
        ConfigError: for an item without ``=`` or with an empty key.
    """
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{what} {item!r}: expected KEY=VALUE {example}".rstrip())
    return key.strip(), parse_override_value(value)


def parse_overrides(items: Iterable[str], *, what: str = "override", example: str = EXAMPLE
                    ) -> dict[str, Any]:
    """``["epochs=5", "data.image_size=64"]`` → ``{"epochs": 5, "data.image_size": 64}``
    (a key given twice keeps its last value).

    Raises:
        ConfigError: for an item without ``=`` (see :func:`parse_override`).
    """
    return dict(parse_override(item, what=what, example=example) for item in items)


def format_override(key: str, value: Any) -> str:
    """Inverse of :func:`parse_override` for one item (YAML flow style for the value)."""
    if isinstance(value, str):
        return f"{key}={value}"
    dumped = yaml.safe_dump(value, default_flow_style=True).strip()
    if dumped.endswith("\n..."):
        dumped = dumped[: -len("\n...")]
    return f"{key}={dumped.removesuffix('...').strip()}"


def set_nested(target: dict[str, Any], path: str | list[str], value: Any) -> None:
    """``target["a"]["b"]["c"] = value`` for ``path="a.b.c"``, creating dicts on the way
    (a non-dict in the way is replaced)."""
    parts = path.split(".") if isinstance(path, str) else list(path)
    for part in parts[:-1]:
        node = target.get(part)
        if not isinstance(node, dict):
            node = target[part] = {}
        target = node
    target[parts[-1]] = value


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1, "a.c": 2}`` → ``{"a": {"b": 1, "c": 2}}`` (inverse of :func:`flatten`)."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        set_nested(out, key, value)
    return out


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict → ``{"a.b.c": value}`` (lists and empty dicts are leaves)."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out
