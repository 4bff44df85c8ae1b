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
