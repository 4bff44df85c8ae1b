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
from collections.abc import Mapping
from typing import Any

from search_space import fields
from search_space.errors import ArchitectureError
from search_space.fields import MAX_DIGITS, MAX_STAGES  # noqa: F401  (part of this module's constants)

NUM_STAGES = 3          # the default number of stages (ShuffleNetV2's stage 2, 3, 4)
KERNEL_SIZES = (3, 5, 7)
MAX_WIDTH = 8192
MAX_DEPTH = 64
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
        widths = fields.int_tuple("widths", self.widths)
        depths = fields.int_tuple("depths", self.depths)
        stages = max(len(widths), len(depths))
        if not 1 <= stages <= MAX_STAGES:
            raise ArchitectureError(f"an architecture has 1 to {MAX_STAGES} stages (entries of widths and depths), "
                                    f"got {stages}")
        fill = {"kernels": DEFAULT_KERNEL, "strides": DEFAULT_STRIDE}
        values = {"widths": widths, "depths": depths}
        for name in ("kernels", "strides"):
            value = getattr(self, name)
            values[name] = (fill[name],) * stages if value is None else fields.int_tuple(name, value)
        values["split_ratios"] = ((DEFAULT_RATIO,) * stages if self.split_ratios is None
                                  else fields.ratio_tuple(self.split_ratios))
        values["blocks"] = (DEFAULT_BLOCK,) * stages if self.blocks is None else fields.token_tuple(self.blocks)
        for name in ("widths", "depths", "split_ratios", "kernels", "blocks", "strides"):
            fields.check_length(name, values[name], stages)
            object.__setattr__(self, name, values[name])
        object.__setattr__(self, "stem", fields.to_int("stem", self.stem))
        object.__setattr__(self, "conv5", fields.to_int("conv5", self.conv5))
        for flag in ("se", "extra_dw", "stem_pool"):
            if not isinstance(getattr(self, flag), bool):
                raise ArchitectureError(f"{flag} must be true or false, got {fields.show(getattr(self, flag))}")
        self._validate()

    def _validate(self) -> None:
        if not 1 <= self.stem <= MAX_WIDTH:
            raise ArchitectureError(f"stem must be in 1..{MAX_WIDTH}, got {fields.show(self.stem)}")
        if not 0 <= self.conv5 <= MAX_WIDTH:
            raise ArchitectureError(f"conv5 must be in 0..{MAX_WIDTH} (0: no head conv), got {fields.show(self.conv5)}")
        for i, width in enumerate(self.widths):
            if width <= 0 or width > MAX_WIDTH:
                raise ArchitectureError(f"widths[{i}] must be in 2..{MAX_WIDTH}, got {fields.show(width)}")
        for i, depth in enumerate(self.depths):
            if not 1 <= depth <= MAX_DEPTH:
                raise ArchitectureError(f"depths[{i}] must be in 1..{MAX_DEPTH}, got {fields.show(depth)}")
        for i, kernel in enumerate(self.kernels):
            if kernel not in KERNEL_SIZES:
                raise ArchitectureError(f"kernels[{i}] must be one of {KERNEL_SIZES}, got {fields.show(kernel)}")
        for i, stride in enumerate(self.strides):
            if stride not in (1, 2):
                raise ArchitectureError(f"strides[{i}] must be 1 or 2, got {fields.show(stride)}")
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
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(map(str, set(data) - known))
        if unknown:
            raise ArchitectureError(f"unknown architecture field(s): {fields.clip(', '.join(unknown))}")
        missing = sorted(f for f in ("widths", "depths") if f not in data)
        if missing:
            raise ArchitectureError(f"missing architecture field(s): {', '.join(missing)}")
        return cls(**dict(data))

    @classmethod
    def from_json(cls, text: str) -> Architecture:
        """Parse the JSON form strictly: integer fields take JSON integers only (``116``, not
        ``116.0`` or ``true``), no key may appear twice, and no number may be absurdly long."""
        try:
            data = json.loads(text, parse_int=fields.json_int, object_pairs_hook=fields.json_object)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ArchitectureError(f"not valid JSON: {exc.msg if hasattr(exc, 'msg') else exc}") from None
        except RecursionError:
            raise ArchitectureError("not valid JSON: nested too deeply") from None
        if isinstance(data, Mapping):
            fields.check_json_integers(data)
        return cls.from_dict(data)

    @classmethod
    def from_string(cls, text: str) -> Architecture:
        """Parse the compact form; fields may come in any order, unknown ones are an error."""
        if not isinstance(text, str) or not text.strip():
            raise ArchitectureError("empty architecture string")
        values: dict[str, Any] = {}
        for part in text.strip().split("_"):
            match = fields.PART.fullmatch(part)
            if not match:
                raise ArchitectureError(f"cannot parse architecture field {fields.show(part)} in {fields.show(text)}")
            key, body = match.group(1), match.group(2)
            name = fields.KEYS[key]
            if name in values:
                raise ArchitectureError(f"field {key!r} given twice in {fields.show(text)}")
            values[name] = fields.parse_body(key, body, text)
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


def branch_channels(width: int, ratio: float) -> int:
    """Channels that go through the conv branch of a stride-1 unit of ``width`` channels."""
    return int(math.floor(width * ratio + 0.5))


