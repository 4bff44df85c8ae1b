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

NUM_STAGES = 3          # the default number of stages (ShuffleNetV2's stage 2, 3, 4)
MAX_STAGES = 8
KERNEL_SIZES = (3, 5, 7)
MAX_WIDTH = 8192
MAX_DEPTH = 64
#: Digits an integer may have in either serialised form; every valid field has at most 4.
MAX_DIGITS = 12
DEFAULT_BLOCK = "v2"
DEFAULT_RATIO = 0.5
DEFAULT_KERNEL = 3
DEFAULT_STRIDE = 2


def _fmt_ratio(r: float) -> str:
    """Shortest text that parses back to ``r``, never in exponent form ('-' separates stages)."""
    text = repr(float(r))
    if "e" in text or "E" in text:
        text = format(decimal.Decimal(text), "f")
    return text[:-2] if text.endswith(".0") else text


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A network: stages of units between a stem and a head, ShuffleNetV2's three by default.

    Every per-stage tuple has one entry per stage (``len(widths)``, 1..8 stages); the optional ones
    default to ShuffleNetV2's value for every stage, so a value that leaves them out is the
    ShuffleNetV2 network it always was (same compact string, same ``arch_id``).

    Attributes:
        widths: output channels of each stage (stage 2, 3, 4, ...).
        depths: units per stage; the first unit of every stage has the stage's stride.
        split_ratios: per stage, the fraction of channels that goes through the conv branch (the
            paper's c'/c = 0.5). In a stride-1 unit the rest passes unchanged (G1, G4); in the
            stride-2 unit it is the share of output channels made by the conv branch. Only units
            that split (``v2``, ``xc``) use it; other stages keep 0.5.
        stem: output channels of conv1 (3x3, stride 2).
        conv5: output channels of the final 1x1 conv; 0: no head conv (global pool and FC straight
            after the last stage, as ShuffleNetV1).
        kernels: per stage, the depthwise kernel size (3, 5 or 7).
        se: squeeze-and-excitation on the conv branch of every unit (SE-ShuffleNetV2).
        extra_dw: an extra 3x3 depthwise conv at the start of each branch (ShuffleNetV2*).
        blocks: per stage, the unit type's token (``v2``, ``v1g3``, ``mb6``, ``xc``: see
            :mod:`search_space.blocks`).
        strides: per stage, the stride of its first unit (1 or 2).
        stem_pool: the 3x3 max-pool after conv1 (False: none even at >= 64 px, as MobileNetV2).
    """

    widths: tuple[int, ...]
    depths: tuple[int, ...]
    split_ratios: tuple[float, ...] | None = None
    stem: int = 24
    conv5: int = 1024
    kernels: tuple[int, ...] | None = None
    se: bool = False
    extra_dw: bool = False
    blocks: tuple[str, ...] | None = None
    strides: tuple[int, ...] | None = None
    stem_pool: bool = True

    def __post_init__(self) -> None:
        widths = _int_tuple("widths", self.widths)
        depths = _int_tuple("depths", self.depths)
        stages = max(len(widths), len(depths))
        if not 1 <= stages <= MAX_STAGES:
            raise ArchitectureError(f"an architecture has 1 to {MAX_STAGES} stages (entries of widths and depths), "
                                    f"got {stages}")
        fill = {"kernels": DEFAULT_KERNEL, "strides": DEFAULT_STRIDE}
        values = {"widths": widths, "depths": depths}
        for name in ("kernels", "strides"):
            value = getattr(self, name)
            values[name] = (fill[name],) * stages if value is None else _int_tuple(name, value)
        values["split_ratios"] = ((DEFAULT_RATIO,) * stages if self.split_ratios is None
                                  else _ratio_tuple(self.split_ratios))
        values["blocks"] = (DEFAULT_BLOCK,) * stages if self.blocks is None else _token_tuple(self.blocks)
        for name in ("widths", "depths", "split_ratios", "kernels", "blocks", "strides"):
            _check_length(name, values[name], stages)
            object.__setattr__(self, name, values[name])
        object.__setattr__(self, "stem", _int("stem", self.stem))
        object.__setattr__(self, "conv5", _int("conv5", self.conv5))
        for flag in ("se", "extra_dw", "stem_pool"):
            if not isinstance(getattr(self, flag), bool):
                raise ArchitectureError(f"{flag} must be true or false, got {_show(getattr(self, flag))}")
        self._validate()

    def _validate(self) -> None:
        if not 1 <= self.stem <= MAX_WIDTH:
            raise ArchitectureError(f"stem must be in 1..{MAX_WIDTH}, got {_show(self.stem)}")
        if not 0 <= self.conv5 <= MAX_WIDTH:
            raise ArchitectureError(f"conv5 must be in 0..{MAX_WIDTH} (0: no head conv), got {_show(self.conv5)}")
        for i, width in enumerate(self.widths):
            if width <= 0 or width > MAX_WIDTH:
                raise ArchitectureError(f"widths[{i}] must be in 2..{MAX_WIDTH}, got {_show(width)}")
        for i, depth in enumerate(self.depths):
            if not 1 <= depth <= MAX_DEPTH:
                raise ArchitectureError(f"depths[{i}] must be in 1..{MAX_DEPTH}, got {_show(depth)}")
        for i, kernel in enumerate(self.kernels):
            if kernel not in KERNEL_SIZES:
                raise ArchitectureError(f"kernels[{i}] must be one of {KERNEL_SIZES}, got {_show(kernel)}")
        for i, stride in enumerate(self.strides):
            if stride not in (1, 2):
                raise ArchitectureError(f"strides[{i}] must be 1 or 2, got {_show(stride)}")
        from search_space.blocks import family_of
        from search_space.blocks.network import stage_specs

        for i, ratio in enumerate(self.split_ratios):
            if not 0.0 < ratio < 1.0:
                raise ArchitectureError(f"split_ratios[{i}] must be in (0, 1), got {ratio}")
            try:
                family = family_of(self.blocks[i])
            except ArchitectureError as exc:
                raise ArchitectureError(f"blocks[{i}]: {exc}") from None
            if not family.uses_ratio and ratio != DEFAULT_RATIO:
                raise ArchitectureError(f"split_ratios[{i}] = {ratio}: a {self.blocks[i]} unit does not split its "
                                        f"input, so its stage keeps {DEFAULT_RATIO}")
        stage_specs(self)  # every unit type checks its own shapes and options (one line naming the stage)

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
        if any(b != DEFAULT_BLOCK for b in self.blocks):
            parts.append("b" + "-".join(self.blocks))
        if any(s != DEFAULT_STRIDE for s in self.strides):
            parts.append("s" + "-".join(map(str, self.strides)))
        if not self.stem_pool:
            parts.append("nopool")
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
        """Every field of the ShuffleNetV2 form; ``blocks``, ``strides``, ``stem_pool`` only when not default."""
        data: dict[str, Any] = {
            "widths": list(self.widths),
            "depths": list(self.depths),
            "split_ratios": list(self.split_ratios),
            "stem": self.stem,
            "conv5": self.conv5,
            "kernels": list(self.kernels),
            "se": self.se,
            "extra_dw": self.extra_dw,
        }
        if any(b != DEFAULT_BLOCK for b in self.blocks):
            data["blocks"] = list(self.blocks)
        if any(s != DEFAULT_STRIDE for s in self.strides):
            data["strides"] = list(self.strides)
        if not self.stem_pool:
            data["stem_pool"] = False
        return data

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

    @property
    def num_stages(self) -> int:
        return len(self.widths)

    @property
    def stage_names(self) -> tuple[str, ...]:
        """``("stage2", "stage3", ...)``: torchvision's names, the stem being stage 1."""
        return tuple(f"stage{i + 2}" for i in range(len(self.widths)))


_KEYS = {"stem": "stem", "w": "widths", "d": "depths", "r": "split_ratios", "k": "kernels", "c": "conv5",
         "se": "se", "xdw": "extra_dw", "b": "blocks", "s": "strides", "nopool": "stem_pool"}
_PART = re.compile(r"(stem|nopool|xdw|se|w|d|r|k|c|b|s)(.*)")
_TOKEN = re.compile(r"[a-z][a-z0-9]{0,15}", re.ASCII)
_INT = re.compile(r"[0-9]+", re.ASCII)
_FLOAT = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+", re.ASCII)


def _parse_body(key: str, body: str, text: str) -> Any:
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
    for name in ("widths", "depths", "kernels", "strides", "stem", "conv5"):
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


def _check_length(name: str, items: tuple[Any, ...], stages: int) -> None:
    if len(items) != stages:
        raise ArchitectureError(f"{name} must have {stages} entries (one per stage, stages 2-{stages + 1}), "
                                f"got {len(items)}")


def _items(name: str, value: Any, what: str) -> list[Any]:
    """The entries of a per-stage field; refuses a string and anything with more entries than a
    network can have stages (so a huge list fails fast, before its entries are converted)."""
    if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
        raise ArchitectureError(f"{name} must be a list of {what}, one per stage, got {_show(value)}")
    items = []
    for item in value:
        items.append(item)
        if len(items) > 4 * MAX_STAGES:
            raise ArchitectureError(f"{name} has more entries than a network has stages (at most {MAX_STAGES})")
    return items


def _int_tuple(name: str, value: Any) -> tuple[int, ...]:
    return tuple(_int(f"{name}[{i}]", v) for i, v in enumerate(_items(name, value, "integers")))


def _token_tuple(value: Any) -> tuple[str, ...]:
    items = _items("blocks", value, "unit tokens")
    for i, v in enumerate(items):
        if not isinstance(v, str) or not _TOKEN.fullmatch(v):
            raise ArchitectureError(f"blocks[{i}] must be a unit token such as v2, v1g3, mb6 or xc, got {_show(v)}")
    return tuple(items)


def _ratio_tuple(value: Any) -> tuple[float, ...]:
    items = []
    for i, v in enumerate(_items("split_ratios", value, "numbers")):
        if isinstance(v, int) and not isinstance(v, bool):  # no int is in (0, 1); float() of a huge one overflows
            raise ArchitectureError(f"split_ratios[{i}] must be in (0, 1), got {_show(v)}")
        if isinstance(v, bool) or not isinstance(v, float) or not math.isfinite(v):
            raise ArchitectureError(f"split_ratios[{i}] must be a number, got {_show(v)}")
        items.append(float(v))
    return tuple(items)
