"""Reading the JSON artefacts a target accumulates (lookup tables, predictors) with one-line errors.

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
