"""`Supernet`: one bank of max-size weights that every architecture of a search space slices.

Weight sharing as in SPOS (single path) and once-for-all (elastic width, depth and kernel), but
with no second copy of the model code: a candidate's network *is* ``build_model(arch)``, built once
on the meta device (no memory, no init) as a skeleton and run through
``torch.func.functional_call`` with tensors cut from the bank. So the supernet can never disagree
with the stand-alone model about a unit's layout, and :meth:`Supernet.extract` hands back that very
module with its inherited weights (to export, measure or fine-tune).

How a candidate maps onto the bank:

* a parameter is named as in ``build_model`` (``stage3.2.branch2.3.weight``); its *slot* adds the
  stage's unit token and the SE / extra-depthwise toggles (``v2-se0-xdw0|stage3.2.branch2.3.weight``),
  since those change a unit's module tree. Stem and head slots are shared by all candidates (the
  classifier has its own slot when there is no head conv: it then reads the last stage directly);
* width and split ratio: the first ``n`` output channels (OFA's channel slicing); input channels
  (and a depthwise conv's, a BN's, an SE's channels) by default the first ``n`` too; with
  ``channel_ids`` by canonical channel id, so a column means the same feature in every path
  (:mod:`evaluator.supernet.channel_ids`; docs/supernet.md gives what each option measured); with
  ``nested_rows`` a unit's output channels are also stored by fate instead of as the first ``n``
  rows, so the channels a unit reads nest across widths (:mod:`evaluator.supernet.nested_rows`);
* depth: a stage of depth ``d`` uses its first ``d`` units' slots (trailing units are skipped);
* kernel: the centre ``k x k`` of the largest kernel; with ``kernel_transform`` a learnt
  ``k^2 x k^2`` matrix per slot and size maps the crop (OFA's kernel transformation);
* BatchNorm: affine parameters are shared; running statistics are not (each step uses batch
  statistics, and a candidate is scored after BN recalibration, :mod:`evaluator.supernet.scoring`).

The bank's shapes are the element-wise maximum over the space's extreme candidates (every unit
type, toggle and split ratio at the largest widths, depths, kernels, stem and head) and a seeded
sample, so every candidate of the space fits; one that does not is refused in one line. With
channel ids an input dim spans its reader's universe instead (one block per producer that can reach it).

(Somewhat over 350 lines: the bank's probe, its cut and the regions ``touched_only`` keeps must read
one index, so they stay in one file; the channel-id tracing lives in ``channel_ids.py``.)
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from collections import OrderedDict
from collections.abc import Iterable, Iterator

import torch
from torch import nn
from torch.func import functional_call

from evaluator.supernet.channel_ids import gather_plan, universes
from evaluator.supernet.nested_rows import candidate_fates, row_pools
from search_space import Architecture, SearchSpace, build_model
from search_space.architecture import branch_channels
from search_space.errors import ArchitectureError, ShufflenasError

#: Skeletons (meta-device models) kept per supernet; building one costs a few milliseconds.
SKELETON_CACHE = 256
#: Extra random candidates whose shapes the bank also covers (a guard for unit types whose sizes
#: are not monotone in width or ratio).
SHAPE_SAMPLES = 64
_BN = nn.modules.batchnorm._BatchNorm


class SupernetError(ShufflenasError, ValueError):
    """An architecture outside the supernet's space, or a supernet that does not fit a run."""


@dataclasses.dataclass(frozen=True)
class SupernetSpec:
    """What a supernet's weights were made for: its identity in checkpoints and in trial records."""

    space: SearchSpace
    num_classes: int
    input_size: int
    kernel_transform: bool = False
    channel_ids: bool = False  # True: input channels indexed by canonical id; False: by position (also files before)
    nested_rows: bool = False  # True: a unit's outputs stored by fate (nested_rows.py); False: first n (files before)

    def __post_init__(self) -> None:
        if self.nested_rows:  # the one place that says so: a reader finds its moved rows by id
            object.__setattr__(self, "channel_ids", True)

    def to_dict(self) -> dict:
        out = {"space": _space_dict(self.space), "num_classes": self.num_classes, "input_size": self.input_size,
               "kernel_transform": self.kernel_transform, "channel_ids": self.channel_ids}
        if self.nested_rows:  # written only when on, so an older reader's checksums of older files stay the same
            out["nested_rows"] = True
        return out

    @classmethod
    def from_dict(cls, data: dict) -> SupernetSpec:
        try:
            return cls(SearchSpace.from_dict(data["space"]), int(data["num_classes"]), int(data["input_size"]),
                       bool(data.get("kernel_transform", False)), bool(data.get("channel_ids", False)),
                       bool(data.get("nested_rows", False)))
        except (KeyError, TypeError, ValueError, ArchitectureError) as exc:
            raise SupernetError(f"not a supernet description ({exc})") from None


def _space_dict(space: SearchSpace) -> dict:
    return {f.name: _plain(getattr(space, f.name)) for f in dataclasses.fields(space)}


def _plain(value):
    return [_plain(v) for v in value] if isinstance(value, tuple) else value


def slot(name: str, arch: Architecture) -> str:
    """The bank slot of ``build_model(arch)``'s parameter or buffer ``name``."""
    head = name.split(".", 1)[0]
    if head in arch.stage_names:
        i = arch.stage_names.index(head)
        return f"{arch.blocks[i]}-se{int(arch.se)}-xdw{int(arch.extra_dw)}|{name}"
    if head == "fc" and not arch.conv5:
        return f"noconv5|{name}"
    return f"net|{name}"


def _key(slot_name: str) -> str:
    """A slot as a module attribute name (no dots allowed there)."""
    return slot_name.replace(".", ":")


def extremes(space: SearchSpace) -> list[Architecture]:
    """The space's largest candidates, one per unit type, toggle and split ratio (and head variant);
    their element-wise maximum shape is every slot's size."""
    widths = tuple(space._widths(i)[-1] for i in range(len(space.width_ranges)))
    depths = tuple(high for _, high in space.depth_ranges)
    conv5s = sorted({max(space.conv5_choices)} | ({0} if 0 in space.conv5_choices else set()))
    out = []
    for token, se, xdw, conv5 in itertools.product(space.block_choices, space.se_choices, space.extra_dw_choices,
                                                   conv5s):
        ratios = space.split_ratios if _splits(token) else (0.5,)
        for ratio in ratios:
            if not all(1 <= branch_channels(w, ratio) < w for w in widths):
                continue
            try:
                out.append(Architecture(widths=widths, depths=depths, split_ratios=(ratio,) * len(widths),
                                        kernels=(max(space.kernel_choices),) * len(widths),
                                        stem=max(space.stem_choices), conv5=conv5, se=se, extra_dw=xdw,
                                        blocks=(token,) * len(widths)))
            except ArchitectureError:
                continue
    return out


def _splits(token: str) -> bool:
    from search_space.blocks import family_of

    return family_of(token).uses_ratio


def _skeleton(arch: Architecture, num_classes: int, input_size: int) -> nn.Module:
    with torch.device("meta"):
        return build_model(arch, num_classes, input_size)


class Supernet(nn.Module):
    """The shared weights of a search space; ``forward(x, arch)`` runs one candidate on them."""

    def __init__(self, space: SearchSpace, num_classes: int, input_size: int, *, kernel_transform: bool = False,
                 channel_ids: bool = False, nested_rows: bool = False, shape_samples: int = SHAPE_SAMPLES,
                 shapes: dict[str, tuple[int, ...]] | None = None) -> None:
        """``shapes`` (slot -> shape, from a stored state) skips probing the space and leaves the bank
        uninitialised, for a load that overwrites it."""
        super().__init__()
        self.spec = SupernetSpec(space, num_classes, input_size, kernel_transform, channel_ids, nested_rows)
        self._pools = row_pools(space) if nested_rows else {}
        self._skeletons: OrderedDict[Architecture, nn.Module] = OrderedDict()
        self._plans: OrderedDict[Architecture, dict] = OrderedDict()
        self._universes: dict = {}
        self.largest = max(extremes(space) or [space.sample(0)], key=self._flops)
        self.smallest = min(self._smallest_candidates(), key=self._flops)
        if shapes is not None:
            if self.spec.channel_ids:
                self._universes = universes(space, self._producer_rows(lambda p: (shapes.get(f"{p}.weight") or (None,))[0]))
            self.bank = nn.ParameterDict({_key(s): nn.Parameter(torch.empty(shape)) for s, shape in shapes.items()})
        else:
            found, kinds, fans = self._probe(space, shape_samples)
            self.bank = nn.ParameterDict({_key(s): nn.Parameter(_init(kinds[s], shape, fans[s]))
                                          for s, shape in found.items()})
        shapes = {s: tuple(p.shape) for s, p in self.bank.items()}
        self.transforms = nn.ParameterDict()
        if kernel_transform:
            for key, shape in shapes.items():
                if len(shape) == 4 and shape[1] == 1 and shape[2] > 1:  # depthwise kernels
                    for k in space.kernel_choices:
                        if k < shape[2]:
                            self.transforms[f"{key}@{k}"] = nn.Parameter(torch.eye(k * k))

    def _probe(self, space: SearchSpace, samples: int) -> tuple[dict[str, list[int]], dict[str, str],
                                                                dict[str, tuple[int, ...]]]:
        """Every slot's shape: the element-wise maximum over the extremes and a seeded sample; with
        channel ids, an id dim spans its reader's universe. Also the positional shape (for the init's fan-in)."""
        shapes: dict[str, list[int]] = {}
        kinds: dict[str, str] = {}
        probes = [*extremes(space), self.smallest, *space.sample_many(samples, seed=0)]
        for arch in probes:
            for name, tensor, kind in _named_tensors(self._skeleton(arch)):
                if kind == "buffer":
                    continue
                s = slot(name, arch)
                old = shapes.setdefault(s, list(tensor.shape))
                if len(old) != tensor.ndim:
                    raise SupernetError(f"slot {s} has tensors of rank {len(old)} and {tensor.ndim}")
                shapes[s] = [max(a, b) for a, b in zip(old, tensor.shape)]
                kinds[s] = kind
        fans = {s: tuple(shape) for s, shape in shapes.items()}
        if self.spec.channel_ids:
            self._universes = universes(space, self._producer_rows(lambda p: (shapes.get(f"{p}.weight") or (None,))[0]))
            for arch in probes:
                for name, dims in self._plan(arch).items():
                    for dim, (_, size) in dims.items():
                        shapes[slot(name, arch)][dim] = size
        return shapes, kinds, fans

    def _producer_rows(self, first_n):
        """A producer slot's rows in the bank: its pools' total with nested rows, else ``first_n(slot)``."""
        return lambda p: self._pools[p].total if p in self._pools else first_n(p)

    # -- the space ------------------------------------------------------------------------------
    @property
    def space(self) -> SearchSpace:
        return self.spec.space

    def check(self, arch: Architecture) -> None:
        """Refuse, in one line, an architecture this supernet cannot run."""
        problems = self.space.violations(arch)
        if problems:
            raise SupernetError(f"{arch} is outside the supernet's space: {'; '.join(problems)}")

    def sample(self, rng: random.Random, draws: int = 1) -> Architecture:
        """A uniform single path (SPOS): every field drawn independently from the space; with
        ``draws`` > 1, the one with the most FLOPs among that many uniform draws (the first on a tie),
        so larger networks are trained more often than a uniform draw trains them."""
        paths = [self.space.sample(rng) for _ in range(draws)]
        return paths[0] if draws == 1 else max(paths, key=self._flops)

    def _flops(self, arch: Architecture) -> int:
        from latency_models.costs.analytic import summary  # an evaluator may use the cost models

        return summary(arch, self.spec.input_size, self.spec.num_classes)["flops"]

    def _smallest_candidates(self) -> list[Architecture]:
        space = self.space
        widths = tuple(space._widths(i)[0] for i in range(len(space.width_ranges)))
        out = []
        for token, ratio in itertools.product(space.block_choices, space.split_ratios):
            try:
                out.append(Architecture(
                    widths=widths, depths=tuple(low for low, _ in space.depth_ranges),
                    split_ratios=(ratio if _splits(token) else 0.5,) * len(widths),
                    kernels=(min(space.kernel_choices),) * len(widths), stem=min(space.stem_choices),
                    conv5=min(space.conv5_choices), se=min(space.se_choices), extra_dw=min(space.extra_dw_choices),
                    blocks=(token,) * len(widths)))
            except ArchitectureError:
                continue
        return [a for a in out if space.contains(a)] or [space.sample(0)]

    # -- one candidate ----------------------------------------------------------------------------
    def _skeleton(self, arch: Architecture) -> nn.Module:
        model = self._skeletons.get(arch)
        if model is None:
            model = _skeleton(arch, self.spec.num_classes, self.spec.input_size)
            self._skeletons[arch] = model
            if len(self._skeletons) > SKELETON_CACHE:
                self._skeletons.popitem(last=False)
        else:
            self._skeletons.move_to_end(arch)
        return model

    def _plan(self, arch: Architecture) -> dict[str, dict[int, tuple[torch.Tensor | slice, int]]]:
        """Parameter name -> {dim: (bank indices, the bank's size there)} for its id dims (and, with nested
        rows, a producer's output dim); empty without channel ids."""
        if not self.spec.channel_ids:
            return {}
        plan = self._plans.get(arch)
        if plan is None:
            plan = gather_plan(self._skeleton(arch), arch, slot, self._universes, SupernetError, self._rows(arch))
            self._plans[arch] = plan
            if len(self._plans) > SKELETON_CACHE:
                self._plans.popitem(last=False)
        else:
            self._plans.move_to_end(arch)
        return plan

    def _rows(self, arch: Architecture) -> dict[str, tuple]:
        """Nested rows: producer slot -> (the bank row of each of its output channels, the slot's rows)."""
        if not self._pools:
            return {}
        out = {}
        for key, fates in candidate_fates(arch, self.space, slot).items():
            pools = self._pools.get(key)
            if pools is None:
                continue
            rows = pools.rows(fates)
            if rows is None:
                raise SupernetError(f"{arch}: the outputs of {key} do not fit the supernet's rows: the candidate "
                                    "lies outside the supernet's space")
            out[key] = (rows, pools.total)
        return out

    def regions(self, arch: Architecture) -> dict[str, tuple[slice | torch.Tensor, ...]]:
        """Bank key -> the index of the part ``arch`` reads, per dim: the first channels, the centre of
        the kernel, or (id dims) the columns of its channels' ids. ``_cut`` reads exactly this."""
        self.check(arch)
        plan = self._plan(arch)
        out = {}
        for name, tensor, kind in _named_tensors(self._skeleton(arch)):
            if kind == "buffer":
                continue
            key = _key(slot(name, arch))
            if key not in self.bank:
                raise SupernetError(f"{arch}: the supernet has no weights for {name} (another space?)")
            big = self.bank[key].shape
            ids = plan.get(name, {})
            if any(n > m for d, (n, m) in enumerate(zip(tensor.shape, big)) if d not in ids):
                raise SupernetError(f"a candidate needs {name} of shape {list(tensor.shape)}, larger than the "
                                    f"supernet's {list(big)}: it lies outside the supernet's space")
            index: list[slice | torch.Tensor] = []
            for d, (n, m) in enumerate(zip(tensor.shape, big)):
                start = (m - n) // 2 if d >= 2 else 0  # kernels: the centre; channels: the first n
                index.append(ids[d][0] if d in ids else slice(start, start + n))
            out[key] = tuple(index)
        return out

    def tensors(self, arch: Architecture, device: torch.device | None = None) -> dict[str, torch.Tensor]:
        """``build_model(arch)``'s state, cut from the bank (parameters stay differentiable: views, or
        ``index_select`` gathers on id dims); BatchNorm buffers are fresh (mean 0, variance 1)."""
        regions = self.regions(arch)
        device = device or next(iter(self.bank.values())).device
        out: dict[str, torch.Tensor] = {}
        for name, tensor, kind in _named_tensors(self._skeleton(arch)):
            if kind == "buffer":
                out[name] = _fresh_buffer(name, tensor, device)
                continue
            key = _key(slot(name, arch))
            out[name] = self._cut(key, tuple(tensor.shape), regions[key])
        return out

    def _cut(self, key: str, shape: tuple[int, ...], region: tuple[slice | torch.Tensor, ...]) -> torch.Tensor:
        big = self.bank[key]
        cut = big[tuple(r if isinstance(r, slice) else slice(None) for r in region)]
        for dim, r in enumerate(region):
            if not isinstance(r, slice):
                cut = cut.index_select(dim, r.to(big.device))
        if len(shape) == 4 and shape[2] < big.shape[2]:
            matrix = self.transforms[f"{key}@{shape[2]}"] if f"{key}@{shape[2]}" in self.transforms else None
            if matrix is not None:
                k = shape[2]
                cut = (cut.reshape(-1, k * k) @ matrix).reshape(shape)
        return cut

    def forward(self, x: torch.Tensor, arch: Architecture) -> torch.Tensor:
        """Logits of candidate ``arch`` with the shared weights (gradients flow into the bank)."""
        return functional_call(self._skeleton(arch), self.tensors(arch, x.device), (x,))

    def extract(self, arch: Architecture) -> nn.Module:
        """``build_model(arch)`` carrying its inherited weights (a copy: training it leaves the bank
        alone); BatchNorm statistics are fresh, so recalibrate before validating."""
        with torch.no_grad():
            state = {name: t.detach().clone() for name, t in self.tensors(arch).items()}  # checks arch
        model = _skeleton(arch, self.spec.num_classes, self.spec.input_size)  # no init: every tensor is given
        model.load_state_dict(state, strict=True, assign=True)
        return model

    def arch_parameters(self, arch: Architecture) -> int:
        """Parameters of the candidate (a check that slicing gives ``build_model``'s count)."""
        return sum(t.numel() for n, t, kind in _named_tensors(self._skeleton(arch)) if kind != "buffer")


def _named_tensors(model: nn.Module) -> Iterator[tuple[str, torch.Tensor, str]]:
    """(name, tensor, kind) for every parameter and buffer; kind: bn-weight, bn-bias, bias, weight, buffer."""
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        for name, p in module.named_parameters(recurse=False):
            if isinstance(module, _BN):
                kind = f"bn-{name}"
            else:
                kind = "bias" if name == "bias" else "weight"
            yield prefix + name, p, kind
        for name, b in module.named_buffers(recurse=False):
            yield prefix + name, b, "buffer"


def _init(kind: str, shape: Iterable[int], fan_shape: Iterable[int] | None = None) -> torch.Tensor:
    """Fresh bank tensor: torch's default conv/linear init (with the fan-in of the largest candidate's
    tensor, ``fan_shape``, not of an id universe), BN weight 1, biases 0."""
    shape = tuple(shape)
    if kind == "bn-weight":
        return torch.ones(shape)
    if kind in ("bn-bias", "bias"):
        return torch.zeros(shape)
    fan = tuple(fan_shape or shape)
    fan_in = fan[1] * math.prod(fan[2:]) if len(fan) > 1 else fan[0]
    bound = math.sqrt(3.0) * (nn.init.calculate_gain("leaky_relu", math.sqrt(5)) / math.sqrt(fan_in))  # kaiming_uniform_'s
    return torch.empty(shape).uniform_(-bound, bound)


def _fresh_buffer(name: str, meta: torch.Tensor, device: torch.device) -> torch.Tensor:
    if name.endswith("running_var"):
        return torch.ones(meta.shape, device=device)
    if name.endswith("num_batches_tracked"):
        return torch.zeros((), dtype=torch.long, device=device)
    return torch.zeros(meta.shape, device=device)


__all__ = ["Supernet", "SupernetError", "SupernetSpec", "extremes", "slot"]
