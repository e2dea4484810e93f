"""A small named-factory registry, one instance per kind of component.

qhead keeps four of them (ansätze, heads, backbones, datasets) so that every
component is chosen by name from a config or the command line, listed by
``qhead list``, and extended by users without touching qhead's code::

    from qhead.models import HEADS

    @HEADS.register("my-head")
    def my_head(feature_shape, num_classes, **options):
        ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from qhead.errors import QheadError

T = TypeVar("T")


class UnknownNameError(QheadError, KeyError):
    """Raised for a name that is not registered; the message lists the allowed names (a
    user error, and a ``KeyError`` for code that looks names up)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def one_line_help(doc: str) -> str:
    """The first sentence of a docstring's first paragraph, on one line (for listings).

    A docstring's summary often wraps over several lines; taking only the first line
    would cut it mid-sentence.
    """
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    end = paragraph.find(". ")
    return paragraph[: end + 1] if end >= 0 else paragraph


class Registry(Generic[T]):
    """Maps names to objects (usually factories) of one kind.

    Args:
        kind: what the registry holds, e.g. ``"head"``; used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, *, help: str | None = None) -> Callable[[T], T]:
        """Decorator that registers ``obj`` under ``name`` and returns it unchanged.

        Raises:
            ValueError: if ``name`` is already registered.
        """

        def decorator(obj: T) -> T:
            self.add(name, obj, help=help)
            return obj

        return decorator

    def add(self, name: str, obj: T, *, help: str | None = None) -> None:
        """Registers ``obj`` under ``name`` (the non-decorator form of :meth:`register`)."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = obj
        doc = help if help is not None else (getattr(obj, "__doc__", None) or "")
        self._help[name] = one_line_help(doc)

    def get(self, name: str) -> T:
        """Returns the entry for ``name``.

        Raises:
            UnknownNameError: naming the registry and listing the allowed names.
        """
        try:
            return self._entries[name]
        except KeyError:
            allowed = ", ".join(sorted(self._entries)) or "(none registered)"
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; allowed: {allowed}"
            ) from None

    def describe(self, name: str) -> str:
        """One-line description of an entry (first line of its docstring)."""
        self.get(name)
        return self._help[name]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
