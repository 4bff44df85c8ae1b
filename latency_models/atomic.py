"""Atomic file writes: the one home of "temporary file beside it, fsync, rename".

Every file the project writes that someone may read while it is written, or that a kill -9 must not
tear (checkpoints, models, lookup tables, calibrations, predictor files, exports, metrics), goes
through :func:`atomic_write`: a kill at any moment leaves either the old file or the new one.
It lives in the lowest package that writes files, so ``evaluator`` and ``experiments`` use it too.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO

TEMP_SUFFIX = ".tmp"


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


#: New files get the usual permissions (``mkstemp`` alone would make them private).
_FILE_MODE = _file_mode()


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object], *, mkdir: bool = True) -> Path:
    """Write ``path`` through ``write(fh)`` into a unique temporary file beside it, fsync, then rename.

    Several processes may write the same file at once (each has its own temporary; the last rename
    wins). OSError propagates; callers turn it into their own one-line error.
    """
    path = Path(path)
    if mkdir:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        os.chmod(tmp, _FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes, **kwargs: bool) -> Path:
    return atomic_write(path, lambda fh: fh.write(data), **kwargs)


def atomic_write_text(path: str | os.PathLike, text: str, **kwargs: bool) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), **kwargs)


def atomic_write_csv(path: str | os.PathLike, fields: Sequence[str],
                     rows: Iterable[Sequence[object] | Mapping[str, object]], *, mkdir: bool = True) -> Path:
    """A CSV table written atomically: the header ``fields``, then ``rows`` (sequences, or mappings read by
    field name, a missing key an empty cell), "\\n" line ends."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(fields)
    for row in rows:
        writer.writerow([row.get(f, "") for f in fields] if isinstance(row, Mapping) else row)
    return atomic_write_text(path, buffer.getvalue(), mkdir=mkdir)


def atomic_write_figure(path: str | os.PathLike, fig: object, *, mkdir: bool = True, **savefig: object) -> Path:
    """A matplotlib figure rendered in memory, then written atomically (a kill never leaves half a PNG)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=Path(path).suffix.lstrip(".") or "png", **savefig)  # type: ignore[attr-defined]
    return atomic_write_bytes(path, buffer.getvalue(), mkdir=mkdir)


def atomic_write_frame(path: str | os.PathLike, frame: object, *, mkdir: bool = True, **to_file: object) -> Path:
    """A pandas DataFrame written atomically as CSV or, for a ``.parquet`` name, Parquet."""
    if Path(path).suffix == ".parquet":
        buffer = io.BytesIO()
        frame.to_parquet(buffer, **to_file)  # type: ignore[attr-defined]
        return atomic_write_bytes(path, buffer.getvalue(), mkdir=mkdir)
    return atomic_write_text(path, frame.to_csv(**to_file), mkdir=mkdir)  # type: ignore[attr-defined]


def remove_stale_temporaries(folder: Path) -> None:
    """Delete the temporary files a killed writer left behind in ``folder`` (``.NAME.*.tmp``)."""
    for tmp in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            tmp.unlink()


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
