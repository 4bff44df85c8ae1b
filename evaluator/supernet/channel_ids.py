"""Canonical channel ids: which bank column a channel of a candidate reads, whatever its position.

ShuffleNetV2 units split, concatenate and shuffle, so the physical position of a channel after a
unit depends on the width, split ratio and depth of everything before it: a bank sliced by
position (first ``n`` input channels) would hand each path another feature in the same column,
and a supernet over several widths, ratios or depths then never learns. Instead every channel
gets an id ``(producer, k)``: the dense conv (or the stem conv) that computed it and its output
index there. Data movement (split, cat, shuffle), pooling, BN, activations, SE scaling and
depthwise convs keep ids; a dense conv makes new ones. A reader (a dense conv's or the FC's input,
a depthwise conv, a BN, an SE) then gathers its bank columns by the ids of its channels.

Ids are found by running the module's own ``forward`` on a ``(1, C, 1, 1)`` tensor whose values are
the ids, every leaf module swapped for a tracer, so cat, slicing and view/transpose move ids exactly
as they move data. Units with a residual add (``mb``, ``v1g``) cannot be traced by values: they keep
positional first-``n`` indexing inside, and their output counts as one producer per stage
(``<slot of the stage>:out``, position = id), which is what the positional bank did.

A reader's columns are its *universe*: one block per producer that can reach it in any candidate
of the space, of that producer's slot width (:func:`universes`, a walk over the units at their
largest widths and every ratio). For a unit of stage ``s`` that is the producers of the units
before it in the stage (and the previous stage's, or the stem's, for the first unit) plus its own.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from search_space import Architecture, SearchSpace
from search_space.blocks import family_of, unit_spec
from search_space.blocks.modules import ChannelShuffle, SqueezeExcite
from search_space.blocks.shufflenet_v2 import ShuffleNetV2Unit
from search_space.blocks.stem_head import HeadSpec, StemSpec
from search_space.errors import ArchitectureError

INPUT = "input"   # the image's channels
_IN = "in"        # a traced unit's input channels
_BN = nn.modules.batchnorm._BatchNorm
_PASS = (nn.ReLU, nn.ReLU6, nn.MaxPool2d, nn.AvgPool2d, nn.Identity, nn.Dropout)
#: parameter of a reader (by the reader's kind and the parameter's name below it) -> its id dim
ID_DIMS = {("dense", "weight"): 1, ("linear", "weight"): 1, ("dw", "weight"): 0, ("bn", "weight"): 0,
           ("bn", "bias"): 0, ("se", "fc1.weight"): 1, ("se", "fc2.weight"): 0, ("se", "fc2.bias"): 0}


def traces_ids(token: str) -> bool:
    """Whether a unit type's channels can be traced by value (no residual add): v2 and xc."""
    return issubclass(family_of(token), ShuffleNetV2Unit)


class _Ids:
    """Numbers the ids of one trace: each producer gets a run of consecutive integers."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.bases: list[int] = []
        self.next = 0

    def new(self, key: str, n: int) -> torch.Tensor:
        self.keys.append(key)
        self.bases.append(self.next)
        self.next += n
        return torch.arange(self.next - n, self.next, dtype=torch.float64).view(1, n, 1, 1)

    def owners(self, ids: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Per channel: its producer (an index into ``keys``) and its index there."""
        values = ids.reshape(-1).numpy().astype(np.int64)
        where = np.searchsorted(np.asarray(self.bases), values, side="right") - 1
        return where, values - np.asarray(self.bases)[where]


@dataclasses.dataclass(frozen=True)
class Trace:
    """What one run of a module did with ids: per reader module, its kind and the (producer, k) it read
    (producers as indices into ``keys``)."""

    kinds: dict[str, str]
    reads: dict[str, tuple[np.ndarray, np.ndarray]]
    out: tuple[np.ndarray, np.ndarray]
    widths: dict[str, int]   # producer -> channels it made
    keys: list[str]

    def channels(self, reader: str) -> list[tuple[str, int]]:
        where, ks = self.reads[reader]
        return [(self.keys[i], int(k)) for i, k in zip(where, ks)]

    def producers(self, where: np.ndarray) -> list[str]:
        return [self.keys[i] for i in dict.fromkeys(where.tolist())]


def trace(module: nn.Module, c_in: int, input_key: str, key_of: Callable[[str], str],
          positional: Callable[[str], tuple[str, int] | None] = lambda name: None) -> Trace:
    """Run ``module`` (any device: its leaves are patched for the run, then restored) on ids.

    ``key_of(module_name)`` names a dense conv's producer; ``positional(name)`` returns
    ``(producer, width)`` for a unit to treat as one positional producer (not traced inside).
    """
    ids, kinds, reads, widths = _Ids(), {}, {}, {}

    def record(name, kind, x):
        kinds[name], reads[name] = kind, x

    def dense(name, m, x):
        record(name, "dense", x)
        widths[key_of(name)] = m.out_channels
        return ids.new(key_of(name), m.out_channels)

    def linear(name, m, x):
        record(name, "linear", x)
        return x.new_zeros(1, m.out_features)

    def keep(kind, name, m, x):
        record(name, kind, x)
        return x

    def block(key, width, name, m, x):
        widths[key] = width
        return ids.new(key, width)

    skip, patched = None, []
    for name, m in module.named_modules():
        if skip is not None and name.startswith(skip):
            continue
        unit = positional(name) if name else None
        if unit is not None:
            fn, skip = functools.partial(block, *unit), name + "."
        elif isinstance(m, nn.Conv2d) and m.groups == 1:
            fn = dense
        elif isinstance(m, nn.Conv2d) and m.groups == m.in_channels == m.out_channels:
            fn = functools.partial(keep, "dw")
        elif isinstance(m, nn.Conv2d):
            raise TypeError(f"{name}: a grouped conv cannot be traced by channel ids (mark its unit positional)")
        elif isinstance(m, _BN):
            fn = functools.partial(keep, "bn")
        elif isinstance(m, SqueezeExcite):
            fn, skip = functools.partial(keep, "se"), name + "."
        elif isinstance(m, nn.Linear):
            fn = linear
        elif isinstance(m, _PASS):
            fn = lambda name, m, x: x  # noqa: E731
        elif isinstance(m, (ChannelShuffle, nn.Sequential)) or next(m.children(), None) is not None:
            continue  # moves channels (or holds modules): its own forward runs
        else:
            raise TypeError(f"{name}: no channel-id rule for {type(m).__name__}")
        m.forward = functools.partial(fn, name, m)
        patched.append(m)
    try:
        with torch.no_grad():
            out = module(ids.new(input_key, c_in))
    finally:  # the module is whole again (a cached skeleton can be traced)
        for m in patched:
            del m.forward
    empty = (np.zeros(0, dtype=np.int64),) * 2
    return Trace(kinds, {n: ids.owners(x) for n, x in reads.items()}, ids.owners(out) if out.ndim == 4 else empty,
                 widths, ids.keys)


# -- universes -----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Universe:
    """A reader's bank columns: one block ``(producer, offset, width)`` per producer that can reach it."""

    blocks: tuple[tuple[str, int, int], ...]

    @functools.cached_property
    def offsets(self) -> dict[str, tuple[int, int]]:
        return {key: (offset, width) for key, offset, width in self.blocks}

    @property
    def size(self) -> int:
        return self.blocks[-1][1] + self.blocks[-1][2] if self.blocks else 0


@functools.lru_cache(maxsize=512)
def _unit_trace(spec) -> Trace:
    with torch.device("meta"):
        module = spec.module()
    return trace(module, spec.c_in, _IN, lambda name: name)


def _stem_trace(c: int) -> Trace:
    with torch.device("meta"):
        module = nn.Sequential(*StemSpec(c).conv_modules())
    return trace(module, 3, INPUT, lambda name: name)


def _head_trace(c_in: int, conv5: int) -> Trace:
    with torch.device("meta"):
        module = HeadSpec(c_in, conv5, 1).module()
    return trace(module, c_in, _IN, lambda name: name)


def head_key(name: str, conv5: int) -> str:
    return f"noconv5|{name}" if name.startswith("fc") and not conv5 else f"net|{name}"


def universes(space: SearchSpace, slot_width: Callable[[str], int | None]) -> dict[str, Universe]:
    """Every reader slot's universe over ``space``; ``slot_width(producer)`` is its bank slot's width
    (None when unknown: the traced width at the largest candidates is used)."""
    sources: dict[str, dict[str, None]] = {}
    widths: dict[str, int] = {INPUT: 3}

    def add(reader: str, producers) -> None:
        sources.setdefault(reader, {}).update(dict.fromkeys(producers))

    def note(found: dict[str, int]) -> None:
        for key, n in found.items():
            widths[key] = max(widths.get(key, 0), n)

    def read(t: Trace, prefix: Callable[[str], str], inputs: dict[str, None]) -> dict[str, None]:
        """Add ``t``'s readers; return what its output can hold."""
        for reader, (where, _) in t.reads.items():
            add(prefix(reader), [p for k in t.producers(where) for p in (inputs if k in (_IN, INPUT) else [prefix(k)])])
        note({prefix(k): n for k, n in t.widths.items()})
        return {p: None for k in t.producers(t.out[0]) for p in (inputs if k in (_IN, INPUT) else [prefix(k)])}

    stem_c = max(space.stem_choices)
    stem = read(_stem_trace(stem_c), lambda name: f"net|conv1.{name}", {INPUT: None})
    stages = range(len(space.width_ranges))
    top = [space._widths(i)[-1] for i in stages]
    for se, xdw in itertools.product(space.se_choices, space.extra_dw_choices):
        prev, c_prev = stem, stem_c
        for i in stages:
            stage, (low, high), out = f"stage{i + 2}", space.depth_ranges[i], {}
            for token in space.block_choices:
                variant, reach = f"{token}-se{int(se)}-xdw{int(xdw)}", dict(prev)
                ratios = space.split_ratios if family_of(token).uses_ratio else (0.5,)
                for j in range(high):
                    after: dict[str, None] = {}
                    for ratio in ratios:
                        try:
                            spec = unit_spec(token, c_in=c_prev if j == 0 else top[i], c_out=top[i],
                                             stride=2 if j == 0 else 1, ratio=ratio, kernel=max(space.kernel_choices),
                                             se=se, extra_dw=xdw, after_stem=i == 0 and j == 0)
                        except ArchitectureError:
                            continue
                        if not traces_ids(token):
                            after[f"{variant}|{stage}:out"] = None
                            note({f"{variant}|{stage}:out": top[i]})
                            continue
                        after.update(read(_unit_trace(spec),
                                          lambda name, p=f"{variant}|{stage}.{j}.": p + name,
                                          reach))
                    if not after:
                        break
                    reach = after
                    if j + 1 >= low:
                        out.update(reach)
            prev, c_prev = out, top[i]
        for conv5 in sorted({max(space.conv5_choices)} | ({0} if 0 in space.conv5_choices else set())):
            read(_head_trace(top[-1], conv5), functools.partial(head_key, conv5=conv5), prev)
    result = {}
    for reader, producers in sources.items():
        blocks, offset = [], 0
        for key in producers:
            width = max(widths.get(key, 0), slot_width(key) or 0)
            blocks.append((key, offset, width))
            offset += width
        result[reader] = Universe(tuple(blocks))
    return result


# -- one candidate ---------------------------------------------------------------------------------
def positional_units(arch: Architecture, slot: Callable[[str, Architecture], str]) -> Callable[[str], tuple | None]:
    """For a whole-network trace: the units of stages whose type keeps positional indexing."""
    kept = {name: i for i, name in enumerate(arch.stage_names) if not traces_ids(arch.blocks[i])}

    def positional(name: str) -> tuple[str, int] | None:
        head, _, rest = name.partition(".")
        if head in kept and rest and "." not in rest:
            return f"{slot(head, arch)}:out", arch.widths[kept[head]]
        return None

    return positional


def gather_plan(model: nn.Module, arch: Architecture, slot: Callable[[str, Architecture], str],
                spaces: dict[str, Universe], error: type[Exception],
                rows: dict[str, tuple[np.ndarray, int]] | None = None) -> dict[str, dict[int, tuple[torch.Tensor | slice, int]]]:
    """Parameter name of ``build_model(arch)`` -> {dim: (the bank indices it reads there, the size of
    that dim in the bank)}: a reader's id dim spans its universe. ``rows`` (producer slot -> the bank
    row of each output channel and the slot's rows, :mod:`evaluator.supernet.nested_rows`) moves a producer's channels off
    its first ``n`` rows: its weight's output dim, and every id that names it, follow."""
    rows = rows or {}
    t = trace(model, 3, INPUT, lambda name: slot(name, arch), positional_units(arch, slot))
    plan: dict[str, dict[int, tuple[torch.Tensor | slice, int]]] = {}
    for name, _ in model.named_parameters():
        module, _, leaf = name.rpartition(".")
        reader, sub = module, leaf
        if module not in t.kinds:
            parent, _, child = module.rpartition(".")
            if t.kinds.get(parent) != "se":
                continue  # inside a positional unit: first n, as before
            reader, sub = parent, f"{child}.{leaf}"
        key = slot(reader, arch)
        if t.kinds[reader] == "dense" and sub == "weight" and key in rows:
            plan.setdefault(name, {})[0] = (_index(rows[key][0]), rows[key][1])
        dim = ID_DIMS.get((t.kinds[reader], sub))
        if dim is None:
            continue
        space = spaces.get(key)
        where, ks = t.reads[reader]
        ks = ks.copy()
        blocks = np.full((len(t.keys), 2), (-1, 0), dtype=np.int64)
        for i in np.unique(where).tolist():
            blocks[i] = space.offsets.get(t.keys[i], (-1, 0)) if space is not None else (-1, 0)
            moved = rows.get(t.keys[i])
            if moved is not None:
                mine = where == i
                ks[mine] = moved[0][ks[mine]]
        offsets, widths = blocks[where, 0], blocks[where, 1]
        bad = np.flatnonzero((offsets < 0) | (ks >= widths))
        if len(bad):
            producer, k = t.keys[where[bad[0]]], int(ks[bad[0]])
            raise error(f"{arch}: channel {k} of {producer} reaches {key}, which the supernet's universe does "
                        "not hold: the candidate lies outside the supernet's space")
        plan.setdefault(name, {})[dim] = (_index(offsets + ks), space.size)
    return plan


def _index(columns: np.ndarray) -> torch.Tensor | slice:
    """A run of consecutive indices as a slice (a view, no gather); any other set as an index tensor."""
    first = int(columns[0]) if len(columns) else 0
    if np.array_equal(columns, np.arange(first, first + len(columns))):
        return slice(first, first + len(columns))
    return torch.from_numpy(np.ascontiguousarray(columns))


__all__ = ["INPUT", "Trace", "Universe", "gather_plan", "trace", "traces_ids", "universes"]
