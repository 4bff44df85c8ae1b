"""Where shufflenas keeps state between runs: ONNX exports, measurements, calibrations.

Everything lives under one directory, ``$SHUFFLENAS_HOME`` (default ``~/.cache/shufflenas``), so a
user or a test can move or wipe it in one place.

File names built from user-given names (a target's name, a calibration name) go through
:func:`safe_file`: a name is a short word of letters, digits, ``.``, ``_`` and ``-`` (never ``..``),
and the resulting path must lie directly in its folder. A targets file therefore cannot make
``latency build-lut`` or ``latency calibrate`` write outside ``$SHUFFLENAS_HOME``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from search_space.errors import ShufflenasError

ENV_VAR = "SHUFFLENAS_HOME"

#: A name that may become part of a file name (targets, calibrations, cache kinds).
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SAFE_NAME_RULE = ("1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit, "
                  "without '..'")


class StateDirError(ShufflenasError):
    """The state directory (``$SHUFFLENAS_HOME``) or one of its folders cannot be used."""


class UnsafeNameError(ShufflenasError, ValueError):
    """A name cannot be used in a file name: it could leave its folder or is not a plain word."""


def unsafe_name_reason(name: object) -> str | None:
    """Why ``name`` cannot be part of a file name, or ``None`` when it can."""
    if not isinstance(name, str):
        return f"must be a string, got {type(name).__name__}"
    if not SAFE_NAME.fullmatch(name) or ".." in name:
        return f"must be {SAFE_NAME_RULE}"
    return None


def check_name(name: str, what: str = "name") -> str:
    """``name`` unchanged when it is safe in a file name; otherwise a one-line :class:`UnsafeNameError`."""
    reason = unsafe_name_reason(name)
    if reason is not None:
        raise UnsafeNameError(f"{what} {name!r} {reason}")
    return name


def safe_file(folder: str | os.PathLike, name: str, suffix: str = "", what: str = "name") -> Path:
    """``folder/<name><suffix>``, refused (one line) unless it is a plain file name directly in ``folder``."""
    check_name(name, what)
    filename = f"{name}{suffix}"
    if not filename or "/" in filename or os.sep in filename or (os.altsep and os.altsep in filename) \
            or "\x00" in filename or filename in (".", ".."):
        raise UnsafeNameError(f"{what} {name!r}: {filename!r} is not a plain file name")
    base = Path(os.path.abspath(folder))
    path = Path(os.path.normpath(base / filename))
    if path.parent != base:
        raise UnsafeNameError(f"{what} {name!r}: {path} lies outside {base}")
    return path


def _ensure_dir(path: Path, what: str) -> Path:
    """Create ``path`` (and parents) or raise one line naming it and why it cannot be used."""
    if path.exists() and not path.is_dir():
        raise StateDirError(f"{what} {path} is a file, not a folder (set {ENV_VAR} to a folder)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise StateDirError(f"{what} {path} is a file, not a folder (set {ENV_VAR} to a folder)") from None
    except NotADirectoryError:
        raise StateDirError(f"{what} {path} cannot be created: a part of it is a file, not a folder "
                            f"(set {ENV_VAR} to a folder)") from None
    except PermissionError:
        raise StateDirError(f"{what} {path} cannot be created: permission denied (set {ENV_VAR} to a "
                            "writable folder)") from None
    except OSError as exc:
        raise StateDirError(f"{what} {path} cannot be created: {exc.strerror or exc} "
                            f"(set {ENV_VAR} to a writable folder)") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise StateDirError(f"{what} {path} is not writable (set {ENV_VAR} to a writable folder)")
    return path


def home_path() -> Path:
    """Where the state directory is (or would be), without creating it: for read-only look-ups."""
    return Path(os.environ.get(ENV_VAR) or Path.home() / ".cache" / "shufflenas").expanduser()


def data_home() -> Path:
    """The root directory for caches and calibrations (created on first use)."""
    return _ensure_dir(home_path(), f"state directory ({ENV_VAR})")


def cache_dir(kind: str) -> Path:
    """A sub-directory for one kind of cached artefact (``onnx``, ``measurements``, ...)."""
    home = data_home()
    return _ensure_dir(safe_file(home, kind, what="cache folder"), "cache folder")


def calibration_dir() -> Path:
    """User calibrations written by ``shufflenas latency calibrate`` (shipped ones live in the package)."""
    return cache_dir("calibrations")


SHIPPED_CALIBRATIONS = Path(__file__).resolve().parent / "calibrations"
