"""Strict conversion of an architecture's fields from user text, JSON and Python values.

Kept apart from :mod:`search_space.architecture` (the value and its forms) because every rule here
is about refusing bad input in one short line: plain ASCII digits only, no absurdly long numbers,
no key twice in JSON, no float where JSON needs an integer, and error texts that stay short even
for a 5000-digit integer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from search_space.errors import ArchitectureError

MAX_STAGES = 8
#: Digits an integer may have in either serialised form; every valid field has at most 4.
MAX_DIGITS = 12

KEYS = {"stem": "stem", "w": "widths", "d": "depths", "r": "split_ratios", "k": "kernels", "c": "conv5",
         "se": "se", "xdw": "extra_dw", "b": "blocks", "s": "strides", "nopool": "stem_pool"}
PART = re.compile(r"(stem|nopool|xdw|se|w|d|r|k|c|b|s)(.*)")
_TOKEN = re.compile(r"[a-z][a-z0-9]{0,15}", re.ASCII)
_INT = re.compile(r"[0-9]+", re.ASCII)
_FLOAT = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+", re.ASCII)


def parse_body(key: str, body: str, text: str) -> Any:
    try:
        if key in ("se", "xdw", "nopool"):
            if body:
                raise ValueError
            return key != "nopool"
        if key == "b":
            items = body.split("-")
            if not all(_TOKEN.fullmatch(x) for x in items):
                raise ValueError(body)
            return tuple(items)
        if key in ("stem", "c"):
            return _to_int(body)
        items = body.split("-")
        if key == "r":
            return tuple(_to_float(x) for x in items)
        return tuple(_to_int(x) for x in items)
    except ValueError:
        raise ArchitectureError(f"bad value {show(body)} for field {key!r} in {show(text)}") from None


def _to_int(text: str) -> int:
    """Plain ASCII digits only: ``int()`` alone would also take ' 24', '+24' and non-ASCII digits."""
    if not _INT.fullmatch(text) or len(text) > MAX_DIGITS:
        raise ValueError(text)
    return int(text)


def _to_float(text: str) -> float:
    if not _FLOAT.fullmatch(text) or len(text) > 40:
        raise ValueError(text)
    return float(text)


def clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def show(value: Any) -> str:
    """``repr`` for an error message: one short line, even for a 5000-digit integer (whose ``repr``
    would itself raise once past Python's int-to-text digit limit)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer with about {int(value.bit_length() * 0.30103) + 1} digits"
    if isinstance(value, str) and len(value) > 60:
        value = value[:50] + "..."
    try:
        return clip(repr(value))
    except ValueError:
        return f"a {type(value).__name__}"


def json_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_DIGITS:
        raise ArchitectureError(f"an integer with {digits} digits in the architecture JSON (at most {MAX_DIGITS})")
    return int(text)


def json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object that names a key twice is refused: ``json`` alone silently keeps the last."""
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise ArchitectureError(f"key {show(key)} appears twice in the architecture JSON")
        data[key] = value
    return data


def check_json_integers(data: Mapping[str, Any]) -> None:
    """Integer fields must be JSON integers: ``116.0`` is a float in JSON (the Python API still
    takes a whole float, e.g. a value that went through a float column)."""
    for name in ("widths", "depths", "kernels", "strides", "stem", "conv5"):
        value = data.get(name)
        items = enumerate(value) if isinstance(value, list) else [(None, value)]
        for i, item in items:
            if isinstance(item, float):
                where = name if i is None else f"{name}[{i}]"
                raise ArchitectureError(f"{where} must be a JSON integer (no decimal point), got {show(item)}")


def to_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ArchitectureError(f"{name} must be an integer, got {show(value)}")
    return value


def check_length(name: str, items: tuple[Any, ...], stages: int) -> None:
    if len(items) != stages:
        raise ArchitectureError(f"{name} must have {stages} entries (one per stage, stages 2-{stages + 1}), "
                                f"got {len(items)}")


def _items(name: str, value: Any, what: str) -> list[Any]:
    """The entries of a per-stage field; refuses a string and anything with more entries than a
    network can have stages (so a huge list fails fast, before its entries are converted)."""
    if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
        raise ArchitectureError(f"{name} must be a list of {what}, one per stage, got {show(value)}")
    items = []
    for item in value:
        items.append(item)
        if len(items) > 4 * MAX_STAGES:
            raise ArchitectureError(f"{name} has more entries than a network has stages (at most {MAX_STAGES})")
    return items


def int_tuple(name: str, value: Any) -> tuple[int, ...]:
    return tuple(to_int(f"{name}[{i}]", v) for i, v in enumerate(_items(name, value, "integers")))


def token_tuple(value: Any) -> tuple[str, ...]:
    items = _items("blocks", value, "unit tokens")
    for i, v in enumerate(items):
        if not isinstance(v, str) or not _TOKEN.fullmatch(v):
            raise ArchitectureError(f"blocks[{i}] must be a unit token such as v2, v1g3, mb6 or xc, got {show(v)}")
    return tuple(items)


def ratio_tuple(value: Any) -> tuple[float, ...]:
    items = []
    for i, v in enumerate(_items("split_ratios", value, "numbers")):
        if isinstance(v, int) and not isinstance(v, bool):  # no int is in (0, 1); float() of a huge one overflows
            raise ArchitectureError(f"split_ratios[{i}] must be in (0, 1), got {show(v)}")
        if isinstance(v, bool) or not isinstance(v, float) or not math.isfinite(v):
            raise ArchitectureError(f"split_ratios[{i}] must be a number, got {show(v)}")
        items.append(float(v))
    return tuple(items)
