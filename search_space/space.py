"""`SearchSpace`: the bounds of the search space, sampled by Optuna or uniformly at random.

Widths are multiples of ``width_divisor`` (4 by default, so the paper's 116/244-channel stages lie
inside the space); ratios and kernels are categorical. ``suggest`` is define-by-run: it uses one
Optuna parameter per field so the samplers see the structure (``w2``, ``d3``, ``r4``, ...).

The default space has ShuffleNetV2 units only. With several ``block_choices`` (``v2``, ``v1g3``,
``mb6``, ...) every stage also draws its unit type (``b2``, ``b3``, ``b4``) and draws a split ratio
only when its unit splits (define-by-run). Such a space is checked when it is made: every width,
input width and option it can combine must give a valid unit, so no candidate fails mid-search.
"""

from __future__ import annotations

import dataclasses
import itertools
import numbers
import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from search_space.architecture import (
    DEFAULT_BLOCK,
    DEFAULT_RATIO,
    KERNEL_SIZES,
    MAX_DEPTH,
    MAX_WIDTH,
    Architecture,
    ArchitectureError,
    branch_channels,
)
from search_space.blocks import check_token, family_of, unit_spec
from search_space.presets import PAPER_PRESETS

if TYPE_CHECKING:  # optuna is only needed by callers that pass a trial
    import optuna

STAGES = (2, 3, 4)
#: Above this many (input width, width) pairs in a stage, a multi-block space checks that stage at one
#: input width only when made; a draw that still gives an invalid unit fails only its own trial.
EXHAUSTIVE_PAIRS = 5000
#: Draws ``sample`` makes before giving up on a multi-block space whose draw keeps being invalid.
SAMPLE_ATTEMPTS = 100


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """Bounds of every searchable field; the defaults contain all four paper presets."""

    width_ranges: tuple[tuple[int, int], ...] = ((24, 256), (48, 512), (96, 1024))
    width_divisor: int = 4
    depth_ranges: tuple[tuple[int, int], ...] = ((1, 6), (2, 10), (1, 6))
    split_ratios: tuple[float, ...] = (0.25, 0.375, 0.5, 0.625, 0.75)
    stem_choices: tuple[int, ...] = (16, 24, 32)
    conv5_choices: tuple[int, ...] = (512, 768, 1024, 1536, 2048)
    kernel_choices: tuple[int, ...] = (3,)
    se_choices: tuple[bool, ...] = (False,)
    extra_dw_choices: tuple[bool, ...] = (False,)
    block_choices: tuple[str, ...] = (DEFAULT_BLOCK,)

    def __post_init__(self) -> None:
        if self.width_divisor < 2 or self.width_divisor % 2:
            raise ArchitectureError(f"width_divisor must be an even number >= 2, got {self.width_divisor}")
        for name in ("width_ranges", "depth_ranges"):
            ranges = getattr(self, name)
            if len(ranges) != len(STAGES) or any(len(r) != 2 or r[0] > r[1] or r[0] < 1 for r in ranges):
                raise ArchitectureError(f"{name} must be three [low, high] pairs with 1 <= low <= high")
        for i, (low, high) in enumerate(self.width_ranges):
            if not self._widths(i):
                raise ArchitectureError(f"no multiple of {self.width_divisor} in width range {low}..{high}")
        for name in ("split_ratios", "stem_choices", "conv5_choices", "kernel_choices", "se_choices", "extra_dw_choices",
                     "block_choices"):
            if not getattr(self, name):
                raise ArchitectureError(f"{name} must not be empty")
        self._check_choices()
        self._check_blocks()

    def _check_choices(self) -> None:
        """Reject values no Architecture can take, so a bad config fails here, not mid-search."""
        if any(hi > MAX_WIDTH for _, hi in self.width_ranges):
            raise ArchitectureError(f"width_ranges must stay within 1..{MAX_WIDTH}")
        if any(hi > MAX_DEPTH for _, hi in self.depth_ranges):
            raise ArchitectureError(f"depth_ranges must stay within 1..{MAX_DEPTH}")
        for r in self.split_ratios:
            if isinstance(r, bool) or not isinstance(r, numbers.Real) or not 0.0 < r < 1.0:
                raise ArchitectureError(f"split_ratios must be numbers in (0, 1), got {r!r}")
        for name, low in (("stem_choices", 1), ("conv5_choices", 0)):  # conv5 0: no head conv
            for c in getattr(self, name):
                if isinstance(c, bool) or not isinstance(c, numbers.Integral) or not low <= c <= MAX_WIDTH:
                    raise ArchitectureError(f"{name} must be integers in {low}..{MAX_WIDTH}, got {c!r}")
        for k in self.kernel_choices:
            if isinstance(k, bool) or k not in KERNEL_SIZES:
                raise ArchitectureError(f"kernel_choices must be among {KERNEL_SIZES}, got {k!r}")
        for name in ("se_choices", "extra_dw_choices"):
            for flag in getattr(self, name):
                if not isinstance(flag, bool):
                    raise ArchitectureError(f"{name} must be true/false values, got {flag!r}")
        if len(set(self.block_choices)) != len(self.block_choices):
            raise ArchitectureError(f"block_choices names a unit type twice: {list(self.block_choices)}")
        for token in self.block_choices:
            if not isinstance(token, str):
                raise ArchitectureError(f"block_choices must be unit tokens such as v2, v1g3, mb6, got {token!r}")
            try:
                check_token(token)
            except ArchitectureError as exc:
                raise ArchitectureError(f"block_choices: {exc}") from None

    def _check_blocks(self) -> None:
        """Every unit a multi-block space can draw must be valid (one line naming the first that is not), so
        no candidate fails mid-search; the default ShuffleNetV2 space needs no check (even widths).

        Per stage, unit type and width: every ratio and option at one input width, then every input
        width (and the stride-1 repeat) at one option set: no unit's options depend on its input width.
        A stage with more than ``EXHAUSTIVE_PAIRS`` (input, width) pairs checks its first input only.
        """
        if self.block_choices == (DEFAULT_BLOCK,):
            return
        inputs = [list(self.stem_choices)] + [self._widths(i) for i in range(len(STAGES) - 1)]
        options = list(itertools.product(self.kernel_choices, self.se_choices, self.extra_dw_choices))
        for i, stage in enumerate(STAGES):
            widths = self._widths(i)
            sources = inputs[i] if len(inputs[i]) * len(widths) <= EXHAUSTIVE_PAIRS else inputs[i][:1]
            for token in self.block_choices:
                ratios = list(self.split_ratios) if family_of(token).uses_ratio else [DEFAULT_RATIO]
                for width in widths:
                    cases = [(sources[0], 2, r, o) for r in ratios for o in options]
                    cases += [(c, 2, ratios[0], options[0]) for c in sources[1:]]
                    if self.depth_ranges[i][1] > 1:
                        cases.append((width, 1, ratios[0], options[0]))
                    for c_in, stride, ratio, (kernel, se, extra_dw) in cases:
                        try:
                            unit_spec(token, c_in=c_in, c_out=width, stride=stride, ratio=ratio, kernel=kernel, se=se,
                                      extra_dw=extra_dw, after_stem=i == 0 and stride == 2)
                        except ArchitectureError as exc:
                            raise ArchitectureError(
                                f"block_choices: stage{stage} can draw a {token} unit of width {width} after {c_in} "
                                f"channels, which is invalid ({exc}); change width_divisor, width_ranges or the "
                                f"choices") from None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchSpace:
        """Build from a config table (lists become tuples); unknown keys are named in the error."""
        if not isinstance(data, Mapping):
            raise ArchitectureError(f"a search space must be a table of options, got {type(data).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(map(str, set(data) - fields))
        if unknown:
            raise ArchitectureError(f"unknown search-space option(s): {', '.join(unknown)}")
        values: dict[str, Any] = {}
        try:
            for key, value in data.items():
                if key == "width_divisor":
                    values[key] = int(value)
                elif key == "block_choices" and isinstance(value, str):  # tuple("v2") would be ("v", "2")
                    raise TypeError(key)
                elif key in ("width_ranges", "depth_ranges"):
                    values[key] = tuple((int(lo), int(hi)) for lo, hi in value)
                else:
                    values[key] = tuple(value)
        except (TypeError, ValueError):
            raise ArchitectureError(f"search-space option {key!r} has the wrong type: {value!r}") from None
        return cls(**values)

    def _widths(self, stage: int) -> list[int]:
        low, high = self.width_ranges[stage]
        d = self.width_divisor
        return list(range(-(-low // d) * d, high + 1, d))

    def _ratios(self, width: int) -> list[float]:
        return [r for r in self.split_ratios if 1 <= branch_channels(width, r) < width]

    @property
    def mixed(self) -> bool:
        """Whether each stage draws its unit type (more than one block choice)."""
        return len(self.block_choices) > 1

    # -- sampling -----------------------------------------------------------------------------
    def suggest(self, trial: optuna.trial.BaseTrial) -> Architecture:
        """Sample an Architecture from an Optuna trial (define-by-run).

        Per stage: ``w``, ``d``, then (several block choices only) the unit type ``b``, the split
        ratio ``r`` (only for a unit that splits) and the kernel ``k``. The default space asks for
        exactly the parameters it always did, so existing studies resume.
        """
        widths, depths, ratios, kernels, blocks = [], [], [], [], []
        for i, stage in enumerate(STAGES):
            low, high = self.width_ranges[i]
            d = self.width_divisor
            widths.append(trial.suggest_int(f"w{stage}", -(-low // d) * d, high // d * d, step=d))
            depths.append(trial.suggest_int(f"d{stage}", *self.depth_ranges[i]))
            block = (trial.suggest_categorical(f"b{stage}", list(self.block_choices)) if self.mixed
                     else self.block_choices[0])
            blocks.append(block)
            ratios.append(trial.suggest_categorical(f"r{stage}", list(self.split_ratios)) if _splits(block)
                          else DEFAULT_RATIO)
            kernels.append(trial.suggest_categorical(f"k{stage}", list(self.kernel_choices)))
        return Architecture(
            widths=tuple(widths),
            depths=tuple(depths),
            split_ratios=tuple(ratios),
            kernels=tuple(kernels),
            stem=trial.suggest_categorical("stem", list(self.stem_choices)),
            conv5=trial.suggest_categorical("conv5", list(self.conv5_choices)),
            se=trial.suggest_categorical("se", list(self.se_choices)),
            extra_dw=trial.suggest_categorical("extra_dw", list(self.extra_dw_choices)),
            blocks=tuple(blocks),
        )

    def params_of(self, arch: Architecture) -> dict[str, Any]:
        """The Optuna parameters that make ``suggest`` return ``arch`` (for ``enqueue_trial``)."""
        self.check(arch)
        params: dict[str, Any] = {"stem": arch.stem, "conv5": arch.conv5, "se": arch.se, "extra_dw": arch.extra_dw}
        for i, stage in enumerate(STAGES):
            params.update({f"w{stage}": arch.widths[i], f"d{stage}": arch.depths[i]})
            if self.mixed:
                params[f"b{stage}"] = arch.blocks[i]
            if _splits(arch.blocks[i]):
                params[f"r{stage}"] = arch.split_ratios[i]
            params[f"k{stage}"] = arch.kernels[i]
        return params

    def sample(self, rng: random.Random | int | None = None) -> Architecture:
        """Uniform random sample over every field (a fixed ``rng`` seed gives the same sequence).

        A multi-block space too large to be checked when made draws again when a draw is invalid.
        """
        rng = rng if isinstance(rng, random.Random) else random.Random(rng)
        for attempt in range(SAMPLE_ATTEMPTS):
            try:
                return self._draw(rng)
            except ArchitectureError:
                if not self.mixed or attempt == SAMPLE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _draw(self, rng: random.Random) -> Architecture:
        widths = [rng.choice(self._widths(i)) for i in range(len(STAGES))]
        depths = tuple(rng.randint(*r) for r in self.depth_ranges)
        blocks = [rng.choice(self.block_choices) if self.mixed else self.block_choices[0] for _ in STAGES]
        return Architecture(
            widths=tuple(widths),
            depths=depths,
            split_ratios=tuple(rng.choice(self._ratios(w) or [DEFAULT_RATIO]) if _splits(b) else DEFAULT_RATIO
                               for w, b in zip(widths, blocks)),
            kernels=tuple(rng.choice(self.kernel_choices) for _ in STAGES),
            stem=rng.choice(self.stem_choices),
            conv5=rng.choice(self.conv5_choices),
            se=rng.choice(self.se_choices),
            extra_dw=rng.choice(self.extra_dw_choices),
            blocks=tuple(blocks),
        )

    def sample_many(self, n: int, seed: int = 0, unique: bool = True) -> list[Architecture]:
        rng = random.Random(seed)
        out: list[Architecture] = []
        seen: set[Architecture] = set()
        attempts = 0
        while len(out) < n and attempts < 100 * max(n, 1):
            attempts += 1
            arch = self.sample(rng)
            if unique and arch in seen:
                continue
            seen.add(arch)
            out.append(arch)
        return out

    # -- membership ---------------------------------------------------------------------------
    def violations(self, arch: Architecture) -> list[str]:
        """Why ``arch`` lies outside this space (empty list: inside)."""
        if arch.num_stages != len(STAGES):
            return [f"it has {arch.num_stages} stages; this space has {len(STAGES)}"]
        problems = []
        for i, stage in enumerate(STAGES):
            if arch.widths[i] not in self._widths(i):
                problems.append(f"stage{stage} width {arch.widths[i]} not a multiple of {self.width_divisor} in {self.width_ranges[i]}")
            low, high = self.depth_ranges[i]
            if not low <= arch.depths[i] <= high:
                problems.append(f"stage{stage} depth {arch.depths[i]} outside {low}..{high}")
            if arch.blocks[i] not in self.block_choices:
                problems.append(f"stage{stage} block {arch.blocks[i]} not in {self.block_choices}")
            if _splits(arch.blocks[i]) and arch.split_ratios[i] not in self.split_ratios:
                problems.append(f"stage{stage} split ratio {arch.split_ratios[i]} not in {self.split_ratios}")
            if arch.kernels[i] not in self.kernel_choices:
                problems.append(f"stage{stage} kernel {arch.kernels[i]} not in {self.kernel_choices}")
            if arch.strides[i] != 2:
                problems.append(f"stage{stage} stride {arch.strides[i]}: this space's stages start at stride 2")
        for name, choices in (("stem", self.stem_choices), ("conv5", self.conv5_choices),
                              ("se", self.se_choices), ("extra_dw", self.extra_dw_choices)):
            if getattr(arch, name) not in choices:
                problems.append(f"{name} {getattr(arch, name)} not in {choices}")
        if not arch.stem_pool:
            problems.append("no stem max-pool: this space keeps it")
        return problems

    def contains(self, arch: Architecture) -> bool:
        return not self.violations(arch)

    def check(self, arch: Architecture) -> None:
        problems = self.violations(arch)
        if problems:
            raise ArchitectureError(f"{arch} is outside the search space: {'; '.join(problems)}")

    def size(self) -> int:
        """Number of distinct architectures in the space."""
        total = len(self.stem_choices) * len(self.conv5_choices) * len(self.se_choices) * len(self.extra_dw_choices)
        per_block = sum(len(self.split_ratios) if _splits(b) else 1 for b in self.block_choices)
        for i in range(len(STAGES)):
            low, high = self.depth_ranges[i]
            total *= len(self._widths(i)) * (high - low + 1) * per_block * len(self.kernel_choices)
        return total


def _splits(token: str) -> bool:
    """Whether a unit type uses its stage's split ratio (ShuffleNetV2, Xception)."""
    return family_of(token).uses_ratio


DEFAULT_SPACE = SearchSpace()
assert all(DEFAULT_SPACE.contains(a) for a in PAPER_PRESETS.values())


def presets_in(space: SearchSpace, names: Sequence[str] | None = None) -> dict[str, Architecture]:
    """The paper presets that lie inside ``space`` (all of them for the default space)."""
    names = list(names) if names is not None else list(PAPER_PRESETS)
    return {n: PAPER_PRESETS[n] for n in names if n in PAPER_PRESETS and space.contains(PAPER_PRESETS[n])}
