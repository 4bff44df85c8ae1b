"""`Registry`: named, lazily imported implementations, the one shape every plug-in point takes.

Evaluators, latency estimators, samplers and block families are each one registry. Entries may be
objects or ``"module:attr"`` strings imported on first use (choosing ``sequential`` never imports
Ray). ``names()`` feeds both ``click.Choice`` and config validation, so the two cannot disagree,
and an unknown name is one line that lists the known ones.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from search_space.errors import ShufflenasError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named set of implementations of one kind (``kind`` names it in error messages)."""

    def __init__(self, kind: str, entries: dict[str, T | str] | None = None, *,
                 error: type[ShufflenasError] = ShufflenasError) -> None:
        self.kind = kind
        self.error = error
        self._entries: dict[str, T | str] = dict(entries or {})

    def register(self, name: str, entry: T | str) -> None:
        """Add ``name`` (an object or a ``"module:attr"`` string); a name can be registered once."""
        if not name or name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is empty or registered twice")
        self._entries[name] = entry

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order (for ``click.Choice`` and validation)."""
        return tuple(self._entries)

    def check(self, name: str, *, extra: tuple[str, ...] = ()) -> str:
        """``name`` when known (or one of ``extra``, e.g. "auto"), else a one-line error."""
        if name in self._entries or name in extra:
            return name
        raise self.error(f"unknown {self.kind} {name!r} (known: {', '.join((*extra, *self._entries))})")

    def get(self, name: str) -> T:
        """The implementation registered as ``name``, imported on first use."""
        self.check(name)
        entry = self._entries[name]
        if isinstance(entry, str):
            module_name, attr = entry.split(":")
            entry = getattr(importlib.import_module(module_name), attr)
        return entry  # type: ignore[return-value]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, name: str) -> Any:
        return self._entries[name]
