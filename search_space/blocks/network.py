"""The one walk over an Architecture: which unit runs where, at which map size.

``build_model``, the analytic costs, the closed-form sizes, the lookup table and the latency
features all place units through these functions, so they cannot disagree about a network's
layout. A stage's first unit has the stage's stride (``arch.strides``); the others have stride 1
and repeat the same spec. The network's first unit reads the stem (``UnitSpec.after_stem``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING

from search_space.blocks.base import UnitError, UnitSpec, family_of, unit_spec
from search_space.blocks.stem_head import HeadSpec, StemSpec
from search_space.errors import ArchitectureError
from search_space.layout import stem_layout

if TYPE_CHECKING:
    from search_space.architecture import Architecture


@dataclasses.dataclass(frozen=True)
class Placement:
    """One unit (or, from :func:`runs`, ``count`` identical consecutive units) at its input size."""

    stage_name: str          # "stage2", "stage3", ...
    index: int               # position of the (first) unit in its stage
    spec: UnitSpec
    h: int
    w: int
    h_out: int
    w_out: int
    count: int = 1

    @property
    def prefix(self) -> str:
        """The unit's module path in ``build_model`` (``stage3.0``): its layers' name prefix."""
        return f"{self.stage_name}.{self.index}"


def stage_specs(arch: Architecture) -> list[tuple[UnitSpec, UnitSpec | None]]:
    """Per stage: the spec of its first unit and of its repeated stride-1 unit (None at depth 1).

    Building a spec checks it, so this is also the architecture's per-stage validation: an
    impossible unit raises one line naming its stage.
    """
    out: list[tuple[UnitSpec, UnitSpec | None]] = []
    c_in = arch.stem
    for i in range(len(arch.widths)):
        token, width = arch.blocks[i], arch.widths[i]
        options = dict(ratio=arch.split_ratios[i], kernel=arch.kernels[i], se=arch.se, extra_dw=arch.extra_dw)
        try:
            first = unit_spec(token, c_in=c_in, c_out=width, stride=arch.strides[i], after_stem=i == 0, **options)
            rest = unit_spec(token, c_in=width, c_out=width, stride=1, **options) if arch.depths[i] > 1 else None
        except UnitError as exc:
            raise exc.at(i) from None
        except ArchitectureError as exc:
            raise ArchitectureError(f"stage{i + 2} ({token}): {exc}") from None
        out.append((first, rest))
        c_in = width
    return out


@functools.lru_cache(maxsize=1024)
def _out_size(spec: UnitSpec, h: int, w: int) -> tuple[int, int]:
    _, h_out, w_out = spec.layers("", "", h, w)
    return h_out, w_out


@functools.lru_cache(maxsize=512)
def _runs(arch: Architecture, input_size: int) -> tuple[Placement, ...]:
    side = stem(arch, input_size).out_size(input_size)
    h = w = side
    out: list[Placement] = []
    for i, (first, rest) in enumerate(stage_specs(arch)):
        name = f"stage{i + 2}"
        h_out, w_out = _out_size(first, h, w)
        out.append(Placement(name, 0, first, h, w, h_out, w_out))
        h, w = h_out, w_out
        if rest is not None:
            h_out, w_out = _out_size(rest, h, w)
            out.append(Placement(name, 1, rest, h, w, h_out, w_out, arch.depths[i] - 1))
    return tuple(out)


def runs(arch: Architecture, input_size: int = 224) -> tuple[Placement, ...]:
    """The units in execution order, each stage's repeated stride-1 units as one placement with a count."""
    return _runs(arch, input_size)


def units(arch: Architecture, input_size: int = 224) -> list[Placement]:
    """Every unit in execution order (count 1 each)."""
    return [dataclasses.replace(run, index=run.index + j, count=1)
            for run in _runs(arch, input_size) for j in range(run.count)]


def stem(arch: Architecture, input_size: int = 224) -> StemSpec:
    """conv1 (+ max-pool): small inputs use stride 1 and no pool (:func:`stem_layout`); the activation
    is the first stage's unit's."""
    stride, pool = stem_layout(input_size, arch.stem_pool)
    return StemSpec(arch.stem, stride, pool, family_of(arch.blocks[0]).activation)


def head(arch: Architecture, input_size: int = 224, num_classes: int = 1000) -> tuple[HeadSpec, int, int]:
    """The head and the map size it reads; the activation is the last stage's unit's."""
    last = _runs(arch, input_size)[-1]
    spec = HeadSpec(arch.widths[-1], arch.conv5, num_classes, family_of(arch.blocks[-1]).activation)
    return spec, last.h_out, last.w_out
