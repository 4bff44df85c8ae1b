"""The `Architecture` value: the one description of a candidate that every layer passes around.

It is immutable, hashable and has two exact serialised forms: a compact string
(``stem24_w116-232-464_d4-8-4_r0.5-0.5-0.5_k3-3-3_c1024``) for command lines, logs and Optuna
user attrs, and a JSON object for files. ``arch_id`` is a short hash of the compact string, so the
same network gets the same id in every run and on every machine.
"""

from __future__ import annotations

import dataclasses
import decimal
import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from search_space.errors import ArchitectureError

NUM_STAGES = 3
KERNEL_SIZES = (3, 5, 7)
MAX_WIDTH = 8192
MAX_DEPTH = 64
#: Digits an integer may have in either serialised form; every valid field has at most 4.
MAX_DIGITS = 12


def _fmt_ratio(r: float) -> str:
    """Shortest text that parses back to ``r``, never in exponent form ('-' separates stages)."""
    text = repr(float(r))
    if "e" in text or "E" in text:
        text = format(decimal.Decimal(text), "f")
    return text[:-2] if text.endswith(".0") else text


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A ShuffleNetV2 network: three stages of units between a stem and a 1x1 conv5 head.

    Attributes:
        widths: output channels of stage 2, 3, 4 (even: a stride-2 unit concatenates two halves).
        depths: units per stage; the first unit of every stage has stride 2.
        split_ratios: per stage, the fraction of channels that goes through the conv branch (the
            paper's c'/c = 0.5). In a stride-1 unit the rest passes unchanged (G1, G4); in the
            stride-2 unit it is the share of output channels made by the conv branch.
        stem: output channels of conv1 (3x3, stride 2).
        conv5: output channels of the final 1x1 conv.
        kernels: per stage, the depthwise kernel size (3, 5 or 7).
        se: squeeze-and-excitation on the conv branch of every unit (SE-ShuffleNetV2).
        extra_dw: an extra 3x3 depthwise conv at the start of each branch (ShuffleNetV2*).
    """

    widths: tuple[int, int, int]
    depths: tuple[int, int, int]
    split_ratios: tuple[float, float, float] = (0.5, 0.5, 0.5)
    stem: int = 24
    conv5: int = 1024
    kernels: tuple[int, int, int] = (3, 3, 3)
    se: bool = False
    extra_dw: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", _int_tuple("widths", self.widths))
        object.__setattr__(self, "depths", _int_tuple("depths", self.depths))
        object.__setattr__(self, "kernels", _int_tuple("kernels", self.kernels))
        object.__setattr__(self, "split_ratios", _ratio_tuple(self.split_ratios))
        object.__setattr__(self, "stem", _int("stem", self.stem))
        object.__setattr__(self, "conv5", _int("conv5", self.conv5))
        for flag in ("se", "extra_dw"):
            if not isinstance(getattr(self, flag), bool):
                raise ArchitectureError(f"{flag} must be true or false, got {getattr(self, flag)!r}")
        self._validate()

    def _validate(self) -> None:
        for name in ("stem", "conv5"):
            value = getattr(self, name)
            if not 1 <= value <= MAX_WIDTH:
                raise ArchitectureError(f"{name} must be in 1..{MAX_WIDTH}, got {_show(value)}")
        for i, width in enumerate(self.widths):
            if width <= 0 or width > MAX_WIDTH:
                raise ArchitectureError(f"widths[{i}] must be in 2..{MAX_WIDTH}, got {_show(width)}")
            if width % 2:
                raise ArchitectureError(
                    f"widths[{i}] = {width} is odd: a stride-2 unit concatenates two equal halves"
                )
        for i, depth in enumerate(self.depths):
            if not 1 <= depth <= MAX_DEPTH:
                raise ArchitectureError(f"depths[{i}] must be in 1..{MAX_DEPTH}, got {_show(depth)}")
        for i, kernel in enumerate(self.kernels):
            if kernel not in KERNEL_SIZES:
                raise ArchitectureError(f"kernels[{i}] must be one of {KERNEL_SIZES}, got {_show(kernel)}")
        for i, ratio in enumerate(self.split_ratios):
            if not 0.0 < ratio < 1.0:
                raise ArchitectureError(f"split_ratios[{i}] must be in (0, 1), got {ratio}")
            if not 1 <= branch_channels(self.widths[i], ratio) < self.widths[i]:
                raise ArchitectureError(
                    f"split_ratios[{i}] = {ratio} leaves no channel on one side of a "
                    f"{self.widths[i]}-channel unit"
                )

    # -- serialised forms -------------------------------------------------------------------
    def to_string(self) -> str:
        """The canonical compact string; ``Architecture.from_string`` gives back an equal value."""
        parts = [
            f"stem{self.stem}",
            "w" + "-".join(map(str, self.widths)),
            "d" + "-".join(map(str, self.depths)),
            "r" + "-".join(_fmt_ratio(r) for r in self.split_ratios),
            "k" + "-".join(map(str, self.kernels)),
            f"c{self.conv5}",
        ]
        if self.se:
            parts.append("se")
        if self.extra_dw:
            parts.append("xdw")
        return "_".join(parts)

    def __str__(self) -> str:
        return self.to_string()

    @property
    def arch_id(self) -> str:
        """A 12-hex-digit id, stable across runs and machines (hash of the canonical string)."""
        return hashlib.sha1(self.to_string().encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        return {
            "widths": list(self.widths),
            "depths": list(self.depths),
            "split_ratios": list(self.split_ratios),
            "stem": self.stem,
            "conv5": self.conv5,
            "kernels": list(self.kernels),
            "se": self.se,
            "extra_dw": self.extra_dw,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Architecture:
        if not isinstance(data, Mapping):
            raise ArchitectureError(f"an architecture must be a JSON object, got {type(data).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(map(str, set(data) - fields))
        if unknown:
            raise ArchitectureError(f"unknown architecture field(s): {_clip(', '.join(unknown))}")
        missing = sorted(f for f in ("widths", "depths") if f not in data)
        if missing:
            raise ArchitectureError(f"missing architecture field(s): {', '.join(missing)}")
        return cls(**dict(data))

    @classmethod
    def from_json(cls, text: str) -> Architecture:
        """Parse the JSON form strictly: integer fields take JSON integers only (``116``, not
        ``116.0`` or ``true``), no key may appear twice, and no number may be absurdly long."""
        try:
            data = json.loads(text, parse_int=_json_int, object_pairs_hook=_json_object)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ArchitectureError(f"not valid JSON: {exc.msg if hasattr(exc, 'msg') else exc}") from None
        except RecursionError:
            raise ArchitectureError("not valid JSON: nested too deeply") from None
        if isinstance(data, Mapping):
            _check_json_integers(data)
        return cls.from_dict(data)

    @classmethod
    def from_string(cls, text: str) -> Architecture:
        """Parse the compact form; fields may come in any order, unknown ones are an error."""
        if not isinstance(text, str) or not text.strip():
            raise ArchitectureError("empty architecture string")
        values: dict[str, Any] = {}
        for part in text.strip().split("_"):
            match = _PART.fullmatch(part)
            if not match:
                raise ArchitectureError(f"cannot parse architecture field {_show(part)} in {_show(text)}")
            key, body = match.group(1), match.group(2)
            name = _KEYS[key]
            if name in values:
                raise ArchitectureError(f"field {key!r} given twice in {_show(text)}")
            values[name] = _parse_body(key, body, text)
        return cls.from_dict(values)

    def replace(self, **changes: Any) -> Architecture:
        return dataclasses.replace(self, **changes)

    @property
    def num_units(self) -> int:
        return sum(self.depths)


_KEYS = {"stem": "stem", "w": "widths", "d": "depths", "r": "split_ratios", "k": "kernels", "c": "conv5",
         "se": "se", "xdw": "extra_dw"}
_PART = re.compile(r"(stem|xdw|se|w|d|r|k|c)(.*)")
_INT = re.compile(r"[0-9]+", re.ASCII)
_FLOAT = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+", re.ASCII)


def _parse_body(key: str, body: str, text: str) -> Any:
    try:
        if key in ("se", "xdw"):
            if body:
                raise ValueError
            return True
        if key in ("stem", "c"):
            return _to_int(body)
        items = body.split("-")
        if key == "r":
            return tuple(_to_float(x) for x in items)
        return tuple(_to_int(x) for x in items)
    except ValueError:
        raise ArchitectureError(f"bad value {_show(body)} for field {key!r} in {_show(text)}") from None


def _to_int(text: str) -> int:
    """Plain ASCII digits only: ``int()`` alone would also take ' 24', '+24' and non-ASCII digits."""
    if not _INT.fullmatch(text) or len(text) > MAX_DIGITS:
        raise ValueError(text)
    return int(text)


def _to_float(text: str) -> float:
    if not _FLOAT.fullmatch(text) or len(text) > 40:
        raise ValueError(text)
    return float(text)


def branch_channels(width: int, ratio: float) -> int:
    """Channels that go through the conv branch of a stride-1 unit of ``width`` channels."""
    return int(math.floor(width * ratio + 0.5))


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _show(value: Any) -> str:
    """``repr`` for an error message: one short line, even for a 5000-digit integer (whose ``repr``
    would itself raise once past Python's int-to-text digit limit)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer with about {int(value.bit_length() * 0.30103) + 1} digits"
    if isinstance(value, str) and len(value) > 60:
        value = value[:50] + "..."
    try:
        return _clip(repr(value))
    except ValueError:
        return f"a {type(value).__name__}"


def _json_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_DIGITS:
        raise ArchitectureError(f"an integer with {digits} digits in the architecture JSON (at most {MAX_DIGITS})")
    return int(text)


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object that names a key twice is refused: ``json`` alone silently keeps the last."""
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise ArchitectureError(f"key {_show(key)} appears twice in the architecture JSON")
        data[key] = value
    return data


def _check_json_integers(data: Mapping[str, Any]) -> None:
    """Integer fields must be JSON integers: ``116.0`` is a float in JSON (the Python API still
    takes a whole float, e.g. a value that went through a float column)."""
    for name in ("widths", "depths", "kernels", "stem", "conv5"):
        value = data.get(name)
        items = enumerate(value) if isinstance(value, list) else [(None, value)]
        for i, item in items:
            if isinstance(item, float):
                where = name if i is None else f"{name}[{i}]"
                raise ArchitectureError(f"{where} must be a JSON integer (no decimal point), got {_show(item)}")


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ArchitectureError(f"{name} must be an integer, got {_show(value)}")
    return value


def _int_tuple(name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ArchitectureError(f"{name} must be a list of {NUM_STAGES} integers, got {_show(value)}")
    items = tuple(_int(f"{name}[{i}]", v) for i, v in enumerate(value))
    if len(items) != NUM_STAGES:
        raise ArchitectureError(f"{name} must have {NUM_STAGES} entries (stages 2-4), got {len(items)}")
    return items


def _ratio_tuple(value: Any) -> tuple[float, ...]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ArchitectureError(f"split_ratios must be a list of {NUM_STAGES} numbers, got {_show(value)}")
    items = []
    for i, v in enumerate(value):
        if isinstance(v, int) and not isinstance(v, bool):  # no int is in (0, 1); float() of a huge one overflows
            raise ArchitectureError(f"split_ratios[{i}] must be in (0, 1), got {_show(v)}")
        if isinstance(v, bool) or not isinstance(v, float) or not math.isfinite(v):
            raise ArchitectureError(f"split_ratios[{i}] must be a number, got {_show(v)}")
        items.append(float(v))
    if len(items) != NUM_STAGES:
        raise ArchitectureError(f"split_ratios must have {NUM_STAGES} entries, got {len(items)}")
    return tuple(items)
