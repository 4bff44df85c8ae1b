"""Nested rows: where a unit's output channels live in the bank, so each reader's inputs nest across widths.

Canonical channel ids (:mod:`evaluator.supernet.channel_ids`) give a bank column one meaning in every
path, but not the *set* of columns a unit reads: after ``concat`` and ``channel_shuffle`` the next
unit's conv branch reads output channels ``[c/4, c/2)`` of the previous branch at width ``c``
(rows 2-3 at 8 channels, rows 4-7 at 16): disjoint sets, so the same 1x1 weights are trained on other
inputs at every width. Measured, that is what keeps a supernet over every stage's width at chance,
and with the shuffle replaced by the identity (each branch then reads a prefix) the same space learns
(docs/supernet.md).

So a producer's output channels are not stored as its first ``n`` rows. Each output channel gets a
*fate*: how many units after its own the first dense conv (or the classifier) that reads it sits,
in the stage run at its largest depth (so a channel's fate does not depend on the candidate's depth).
A producer slot's rows are split into one pool per fate, each as large as the most channels of that
fate any candidate of the space gives it, and a candidate's channels of fate ``f`` take the first
rows of pool ``f`` in their order. A reader at distance ``f`` then reads a prefix of that pool at
every width and split ratio: the sets nest, as first-``n`` slicing nests in a plain CNN.

Fates come from the units' own traces (:func:`channel_ids._unit_trace`): one stride-2 and one
stride-1 unit per stage shape, composed over the stage, so nothing about a unit's layout is written
here. Units that keep positional indexing (``mb``, ``v1g``) and producers whose channels all share a
fate (the stem, a unit's first 1x1, the head conv) keep their first ``n`` rows.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import numpy as np

from search_space import Architecture, SearchSpace
from search_space.blocks import unit_spec
from search_space.errors import ArchitectureError

#: reader kinds whose read decides a channel's fate (depthwise convs, BN and SE keep the channel)
FATE_READERS = ("dense", "linear")


@dataclasses.dataclass(frozen=True)
class Pools:
    """One producer slot's rows: fate -> (first row, rows); ``total`` rows in all."""

    pools: tuple[tuple[int, int, int], ...]   # (fate, offset, size), fates ascending

    @functools.cached_property
    def by_fate(self) -> dict[int, tuple[int, int]]:
        return {f: (offset, size) for f, offset, size in self.pools}

    @property
    def total(self) -> int:
        return sum(size for _, _, size in self.pools)

    def rows(self, fates: np.ndarray) -> np.ndarray | None:
        """Bank rows of a producer's channels with these fates (in output order); None when a fate
        has no pool or overflows it (the candidate lies outside the space the pools were sized for)."""
        out = np.empty(len(fates), dtype=np.int64)
        for f in np.unique(fates).tolist():
            where = np.flatnonzero(fates == f)
            offset, size = self.by_fate.get(f, (0, -1))
            if len(where) > size:
                return None
            out[where] = offset + np.arange(len(where))
        return out


@functools.lru_cache(maxsize=4096)
def stage_fates(token: str, se: bool, extra_dw: bool, width: int, ratio: float, kernel: int, depth: int,
                first: bool) -> dict[tuple[int, str], np.ndarray]:
    """(unit index, producer module name inside the unit) -> each output channel's fate, for a stage of
    ``depth`` units of this shape (the first one strided). A channel no unit of the stage reads gets
    ``depth - j``: the next stage's first unit (or the head) reads every channel."""
    from evaluator.supernet.channel_ids import _IN, _unit_trace, traces_ids

    if not traces_ids(token):
        return {}
    t0 = _unit_trace(unit_spec(token, c_in=width, c_out=width, stride=2, ratio=ratio, kernel=kernel, se=se,
                               extra_dw=extra_dw, after_stem=first))
    t1 = _unit_trace(unit_spec(token, c_in=width, c_out=width, stride=1, ratio=ratio, kernel=kernel, se=se,
                               extra_dw=extra_dw)) if depth > 1 else None
    read_next = passes = None
    if t1 is not None:
        inp = t1.keys.index(_IN)
        read_next = np.zeros(width, dtype=bool)
        for reader, (where, ks) in t1.reads.items():
            if t1.kinds[reader] in FATE_READERS:
                read_next[ks[where == inp]] = True
        passes = np.full(width, -1, dtype=np.int64)   # input position -> output position, if passed through
        where, ks = t1.out
        kept = np.flatnonzero(where == inp)
        passes[ks[kept]] = kept
    out: dict[tuple[int, str], np.ndarray] = {}
    for j in range(depth):
        t = t0 if j == 0 else t1
        inside = {}
        for reader, (where, ks) in t.reads.items():
            if t.kinds[reader] in FATE_READERS:
                for p in np.unique(where).tolist():
                    inside.setdefault(t.keys[p], set()).update(ks[where == p].tolist())
        out_where, out_ks = t.out
        for p, key in enumerate(t.keys):
            if key == _IN:
                continue
            fates = np.full(t.widths[key], depth - j, dtype=np.int64)
            fates[sorted(inside.get(key, ()))] = 0
            mine = np.flatnonzero(out_where == p)          # positions at the unit's output
            pos, ks, alive = mine.copy(), out_ks[mine], np.ones(len(mine), dtype=bool)
            for f in range(1, depth - j):
                hit = alive & read_next[np.maximum(pos, 0)]
                fates[ks[hit & (fates[ks] != 0)]] = f
                alive &= ~hit
                pos = np.where(alive, passes[np.maximum(pos, 0)], -1)
                alive &= pos >= 0
            out[(j, key)] = fates
    return out


def _stage_shapes(arch: Architecture, space: SearchSpace):
    """Per stage of ``arch``: (stage name, fate-table arguments)."""
    kernel = max(space.kernel_choices)
    for i, stage in enumerate(arch.stage_names):
        yield stage, (arch.blocks[i], bool(arch.se), bool(arch.extra_dw), arch.widths[i],
                      float(arch.split_ratios[i]), kernel, space.depth_ranges[i][1], i == 0)


def candidate_fates(arch: Architecture, space: SearchSpace, slot) -> dict[str, np.ndarray]:
    """Producer slot -> fates of the candidate's output channels (only producers of traced units)."""
    out = {}
    for i, (stage, args) in enumerate(_stage_shapes(arch, space)):
        for (j, name), fates in stage_fates(*args).items():
            if j < arch.depths[i]:
                out[slot(f"{stage}.{j}.{name}", arch)] = fates
    return out


@functools.lru_cache(maxsize=8)
def row_pools(space: SearchSpace) -> dict[str, Pools]:
    """Producer slot -> its pools, sized by every width, split ratio, unit type and toggle of the space.
    Producers whose channels all share one fate are left out (they keep their first ``n`` rows)."""
    counts: dict[str, dict[int, int]] = {}
    for i, stage in enumerate(f"stage{i + 2}" for i in range(len(space.width_ranges))):
        for token, se, xdw in itertools.product(space.block_choices, space.se_choices, space.extra_dw_choices):
            for width in space._widths(i):
                for ratio in space.split_ratios:
                    try:
                        fates = stage_fates(token, bool(se), bool(xdw), width, float(ratio),
                                            max(space.kernel_choices), space.depth_ranges[i][1], i == 0)
                    except ArchitectureError:
                        continue
                    variant = f"{token}-se{int(se)}-xdw{int(xdw)}"
                    for (j, name), f in fates.items():
                        c = counts.setdefault(f"{variant}|{stage}.{j}.{name}", {})
                        for fate, n in zip(*np.unique(f, return_counts=True)):
                            c[int(fate)] = max(c.get(int(fate), 0), int(n))
    out = {}
    for key, c in counts.items():
        if len(c) > 1:
            offsets = np.cumsum([0] + [c[f] for f in sorted(c)])
            out[key] = Pools(tuple((f, int(o), c[f]) for f, o in zip(sorted(c), offsets)))
    return out


__all__ = ["Pools", "candidate_fates", "row_pools", "stage_fates"]
