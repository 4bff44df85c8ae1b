"""`SearchSpace`: the bounds of the ShuffleNetV2 space, sampled by Optuna or uniformly at random.

Widths are multiples of ``width_divisor`` (4 by default, so the paper's 116/244-channel stages lie
inside the space); ratios and kernels are categorical. ``suggest`` is define-by-run: it uses one
Optuna parameter per field so the samplers see the structure (``w2``, ``d3``, ``r4``, ...).
"""

from __future__ import annotations

import dataclasses
import numbers
import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from search_space.architecture import (
    KERNEL_SIZES,
    MAX_DEPTH,
    MAX_WIDTH,
    Architecture,
    ArchitectureError,
    branch_channels,
)
from search_space.presets import PAPER_PRESETS

if TYPE_CHECKING:  # optuna is only needed by callers that pass a trial
    import optuna

STAGES = (2, 3, 4)


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
        for name in ("split_ratios", "stem_choices", "conv5_choices", "kernel_choices", "se_choices", "extra_dw_choices"):
            if not getattr(self, name):
                raise ArchitectureError(f"{name} must not be empty")
        self._check_choices()

    def _check_choices(self) -> None:
        """Reject values no Architecture can take, so a bad config fails here, not mid-search."""
        if any(hi > MAX_WIDTH for _, hi in self.width_ranges):
            raise ArchitectureError(f"width_ranges must stay within 1..{MAX_WIDTH}")
        if any(hi > MAX_DEPTH for _, hi in self.depth_ranges):
            raise ArchitectureError(f"depth_ranges must stay within 1..{MAX_DEPTH}")
        for r in self.split_ratios:
            if isinstance(r, bool) or not isinstance(r, numbers.Real) or not 0.0 < r < 1.0:
                raise ArchitectureError(f"split_ratios must be numbers in (0, 1), got {r!r}")
        for name in ("stem_choices", "conv5_choices"):
            for c in getattr(self, name):
                if isinstance(c, bool) or not isinstance(c, numbers.Integral) or not 1 <= c <= MAX_WIDTH:
                    raise ArchitectureError(f"{name} must be integers in 1..{MAX_WIDTH}, got {c!r}")
        for k in self.kernel_choices:
            if isinstance(k, bool) or k not in KERNEL_SIZES:
                raise ArchitectureError(f"kernel_choices must be among {KERNEL_SIZES}, got {k!r}")
        for name in ("se_choices", "extra_dw_choices"):
            for flag in getattr(self, name):
                if not isinstance(flag, bool):
                    raise ArchitectureError(f"{name} must be true/false values, got {flag!r}")

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

    # -- sampling -----------------------------------------------------------------------------
    def suggest(self, trial: optuna.trial.BaseTrial) -> Architecture:
        """Sample an Architecture from an Optuna trial (define-by-run)."""
        widths, depths, ratios, kernels = [], [], [], []
        for i, stage in enumerate(STAGES):
            low, high = self.width_ranges[i]
            d = self.width_divisor
            widths.append(trial.suggest_int(f"w{stage}", -(-low // d) * d, high // d * d, step=d))
            depths.append(trial.suggest_int(f"d{stage}", *self.depth_ranges[i]))
            ratios.append(trial.suggest_categorical(f"r{stage}", list(self.split_ratios)))
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
        )

    def params_of(self, arch: Architecture) -> dict[str, Any]:
        """The Optuna parameters that make ``suggest`` return ``arch`` (for ``enqueue_trial``)."""
        self.check(arch)
        params: dict[str, Any] = {"stem": arch.stem, "conv5": arch.conv5, "se": arch.se, "extra_dw": arch.extra_dw}
        for i, stage in enumerate(STAGES):
            params.update({f"w{stage}": arch.widths[i], f"d{stage}": arch.depths[i],
                           f"r{stage}": arch.split_ratios[i], f"k{stage}": arch.kernels[i]})
        return params

    def sample(self, rng: random.Random | int | None = None) -> Architecture:
        """Uniform random sample over every field (a fixed ``rng`` seed gives the same sequence)."""
        rng = rng if isinstance(rng, random.Random) else random.Random(rng)
        widths = [rng.choice(self._widths(i)) for i in range(len(STAGES))]
        return Architecture(
            widths=tuple(widths),
            depths=tuple(rng.randint(*r) for r in self.depth_ranges),
            split_ratios=tuple(rng.choice(self._ratios(w) or [0.5]) for w in widths),
            kernels=tuple(rng.choice(self.kernel_choices) for _ in STAGES),
            stem=rng.choice(self.stem_choices),
            conv5=rng.choice(self.conv5_choices),
            se=rng.choice(self.se_choices),
            extra_dw=rng.choice(self.extra_dw_choices),
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
        problems = []
        for i, stage in enumerate(STAGES):
            if arch.widths[i] not in self._widths(i):
                problems.append(f"stage{stage} width {arch.widths[i]} not a multiple of {self.width_divisor} in {self.width_ranges[i]}")
            low, high = self.depth_ranges[i]
            if not low <= arch.depths[i] <= high:
                problems.append(f"stage{stage} depth {arch.depths[i]} outside {low}..{high}")
            if arch.split_ratios[i] not in self.split_ratios:
                problems.append(f"stage{stage} split ratio {arch.split_ratios[i]} not in {self.split_ratios}")
            if arch.kernels[i] not in self.kernel_choices:
                problems.append(f"stage{stage} kernel {arch.kernels[i]} not in {self.kernel_choices}")
        for name, choices in (("stem", self.stem_choices), ("conv5", self.conv5_choices),
                              ("se", self.se_choices), ("extra_dw", self.extra_dw_choices)):
            if getattr(arch, name) not in choices:
                problems.append(f"{name} {getattr(arch, name)} not in {choices}")
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
        for i in range(len(STAGES)):
            low, high = self.depth_ranges[i]
            total *= len(self._widths(i)) * (high - low + 1) * len(self.split_ratios) * len(self.kernel_choices)
        return total


DEFAULT_SPACE = SearchSpace()
assert all(DEFAULT_SPACE.contains(a) for a in PAPER_PRESETS.values())


def presets_in(space: SearchSpace, names: Sequence[str] | None = None) -> dict[str, Architecture]:
    """The paper presets that lie inside ``space`` (all of them for the default space)."""
    names = list(names) if names is not None else list(PAPER_PRESETS)
    return {n: PAPER_PRESETS[n] for n in names if n in PAPER_PRESETS and space.contains(PAPER_PRESETS[n])}
