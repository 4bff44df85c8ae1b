"""What every study shares: its error type and the output-directory check."""

from __future__ import annotations

from pathlib import Path

from search_space.errors import ShufflenasError


class StudyError(ShufflenasError):
    """Bad study input: no samples, an output path that is a file, a target that cannot be used."""


def check_out_dir(out_dir: str | Path) -> Path:
    """The output directory, created; a path that exists as a file is a user error."""
    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise StudyError(f"output path {path} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StudyError(f"cannot create output directory {path}: {exc.strerror or exc}") from None
    return path
