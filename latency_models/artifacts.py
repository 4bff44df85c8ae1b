"""Reading the files users and earlier runs leave, with one-line errors: the JSON artefacts a target
accumulates (lookup tables, predictors) and TOML files (configs, recipes, targets).

Both are written by shufflenas and may be left truncated by a crash or edited by hand: reading one
checks that it parses, is of the expected format and not from a newer release, and otherwise raises
the caller's error class with a message naming the file and how to rebuild it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from search_space.errors import first_line


def read_artifact(path: str | Path, *, kind: str, fmt: str, version: int, error: type[Exception],
                  rebuild: str) -> dict[str, Any]:
    """The JSON object in ``path``; ``kind`` names it in messages, ``rebuild`` says how to redo it."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"{kind} file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{kind} file {path} is corrupted or truncated ({type(exc).__name__}); {rebuild}") from None
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise error(f"{kind} file {path} is invalid: not a {kind} file")
    try:
        newer = int(data["version"]) > version
    except (KeyError, TypeError, ValueError):
        raise error(f"{kind} file {path} is invalid: missing or bad format version") from None
    if newer:
        raise error(f"{kind} file {path} is invalid: format version {data['version']} is newer than this "
                    f"shufflenas supports")
    return data


def invalid_detail(exc: BaseException) -> str:
    """First line of an exception's message, or its type when it has none (see ``first_line``)."""
    return first_line(exc)


def read_toml(path: str | Path, *, kind: str, error: type[Exception], missing: str | None = None) -> dict[str, Any]:
    """Parse a TOML file (a config, a recipe, a targets file); every failure is one ``error`` line
    naming the file. ``missing`` replaces the default message for a file that does not exist."""
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(missing or f"{kind} file {path} does not exist") from None
    except IsADirectoryError:
        raise error(f"{kind} file {path} is a directory") from None
    except UnicodeDecodeError:
        raise error(f"{kind} file {path} is not valid TOML: not UTF-8 text") from None
    except OSError as exc:
        raise error(f"cannot read {kind} file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{kind} file {path} is not valid TOML: {exc}") from None
