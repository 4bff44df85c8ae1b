"""Errors shared by every package: one base class so the CLI can turn any of them into one line."""

from __future__ import annotations


class ShufflenasError(Exception):
    """Base class for every error a user can cause (bad input, missing file, unknown name).

    The CLI prints ``str(error)`` on one line and exits with :attr:`exit_code`; anything that is
    not a ``ShufflenasError`` is a bug and keeps its traceback.
    """

    exit_code: int = 2


class ArchitectureError(ShufflenasError, ValueError):
    """An architecture string, JSON document or field value is invalid."""


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type name when it has none.

    The one helper every one-line error message uses to quote a library's exception.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def check_known_keys(data: object, cls: type, what: str, error: type[Exception]) -> None:
    """A table given for dataclass ``cls`` may name only its fields: ``unknown <what>(s): ... (known: ...)``."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(map(str, set(data) - fields))  # type: ignore[call-overload]
    if unknown:
        raise error(f"unknown {what}(s): {', '.join(unknown)} (known: {', '.join(sorted(fields))})")
