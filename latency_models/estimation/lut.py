"""Per-block lookup table (FBNet / OFA style): network latency = sum of measured block latencies.

An architecture decomposes into distinct blocks: the stem (conv1 + max-pool), each unit keyed by
its spec's shape and options (for ShuffleNetV2 units: c_in, c_out, stride, split ratio, kernel, SE,
extra depthwise, input h x w) and the head (conv5, global pool, FC). Every stride-1 unit of a stage
shares one key, so a three-stage network has at most eight distinct blocks. Each block is measured on the target as a standalone module
(:func:`latency_models.measurement.measure.measure_module`), in two sweeps whose geometric mean is its entry; a whole network is then
``scale * sum(blocks) + offset``, with ``scale`` and ``offset`` fitted on a few whole networks
measured with :func:`latency_models.measurement.measure.measure` (they absorb the session overhead and the
cache effects that a standalone block does not see). With enough calibration networks a third term,
``ms_per_mparam * weights``, prices the weights a whole network streams from memory: a block timed
alone runs again and again on weights already in cache, a network of several megabytes of weights
does not.

The default space has far too many blocks to tabulate up front, so the table grows on demand: a
new architecture measures only its missing blocks. The table lives in
``calibration_dir()/<target>.lut.json`` with provenance and software versions.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import platform
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from latency_models.atomic import atomic_write_text
from latency_models.estimation.lut_fit import MIN_NETWORKS_FOR_WEIGHTS, fit_terms, leave_one_out  # noqa: F401
from latency_models.artifacts import invalid_detail, read_artifact
from latency_models.paths import calibration_dir, safe_file
from search_space import Architecture
from search_space.blocks import UnitSpec, network
from search_space.blocks.stem_head import HeadSpec, StemSpec
from search_space.errors import ShufflenasError

if TYPE_CHECKING:
    from torch import nn

    from latency_models.measurement.targets import Target

FORMAT = "shufflenas-latency-lut"
VERSION = 1
NUM_CLASSES = 1000
# Sweeps over the missing blocks; an entry is the geometric mean of its sweeps. A block timed alone
# drifts with the machine's state more than a whole network does (its two sweeps differ by about 6%
# std), and averaging two sweeps cut the table's held-out MAPE from 3.1-3.4% to 2.6-2.8% on two samples
# of 200 networks (benchmarks/results/latency_accuracy.md, seeds 13 and 17).
BLOCK_PASSES = 2


class LutFileError(ShufflenasError):
    """A lookup-table file is truncated, corrupted or for another target."""


class LutError(ShufflenasError):
    """The lookup table cannot answer (missing blocks on a target that cannot be measured here)."""


def lut_path(target_name: str) -> Path:
    return safe_file(calibration_dir(), target_name, ".lut.json", "target")


@dataclasses.dataclass(frozen=True)
class Block:
    """One distinct block of a network at its input size; ``key`` is its table entry (batch excluded).

    ``spec`` is the stem's, a unit's or the head's spec (:mod:`search_space.blocks`): the key and
    the standalone module both come from it, so a table entry always times the module that
    ``build_model`` places there.
    """

    kind: str              # "stem", "unit" or "head"
    spec: StemSpec | UnitSpec | HeadSpec
    h: int                 # input height and width
    w: int

    @property
    def key(self) -> str:
        return self.spec.key(self.h, self.w)

    @property
    def c_in(self) -> int:
        return self.spec.c_in

    @property
    def c_out(self) -> int:
        return self.spec.c_out

    def input_shape(self, batch: int) -> tuple[int, int, int, int]:
        return (batch, self.c_in, self.h, self.w)

    def module(self) -> nn.Module:
        """The standalone torch module, the spec's own (the one ``build_model`` uses)."""
        return self.spec.module()


def decompose(arch: Architecture, input_size: int = 224) -> list[tuple[Block, int]]:
    """The distinct blocks of ``arch`` at ``input_size`` with how often each occurs, in network order.

    A stage's repeated stride-1 units are one block with their count (:func:`network.runs`).
    """
    blocks = [(Block("stem", network.stem(arch, input_size), input_size, input_size), 1)]
    blocks += [(Block("unit", run.spec, run.h, run.w), run.count) for run in network.runs(arch, input_size)]
    head, h, w = network.head(arch, input_size, NUM_CLASSES)
    blocks.append((Block("head", head, h, w), 1))
    return blocks


@dataclasses.dataclass
class LookupTable:
    """A per-block latency table for one target; ``predict`` gives milliseconds per batch."""

    target: Target
    blocks: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    scale: float = 1.0
    offset: float = 0.0
    ms_per_mparam: float = 0.0   # weight-streaming cost per million parameters (see module doc)
    networks: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    quality: dict[str, Any] = dataclasses.field(default_factory=dict)
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)
    auto_extend: bool = True   # measure missing blocks on predict (measurable targets only)
    name: str = "lut"

    # -- lookups -----------------------------------------------------------------------------
    def missing(self, archs: Iterable[Architecture]) -> list[Block]:
        """Distinct blocks of ``archs`` not yet in the table."""
        seen: dict[str, Block] = {}
        for arch in archs:
            for block, _ in decompose(arch, self.target.input_size):
                if block.key not in self.blocks and block.key not in seen:
                    seen[block.key] = block
        return list(seen.values())

    def missing_blocks(self, arch: Architecture) -> int:
        """How many blocks of ``arch`` the table lacks (what predicting it would measure)."""
        return len(self.missing([arch]))

    def block_sum(self, arch: Architecture, *, allow_measure: bool = True) -> float:
        """Sum of the block latencies of ``arch``, measuring missing blocks when the table may
        (``auto_extend``) and the caller allows it; with ``allow_measure=False`` nothing is timed."""
        if allow_measure and self.auto_extend and self.missing([arch]):
            self.extend([arch])
            self.save()
        total = 0.0
        for block, count in decompose(arch, self.target.input_size):
            entry = self.blocks.get(block.key)
            if entry is None:
                raise LutError(f"lookup table for {self.target.name!r} lacks block {block.key} "
                               f"(run: shufflenas latency build-lut --target {self.target.name} --arch {arch})")
            total += count * float(entry["ms"])
        return total

    def predict(self, arch: Architecture, *, allow_measure: bool = True) -> float:
        total = self.scale * self.block_sum(arch, allow_measure=allow_measure) + self.offset
        if self.ms_per_mparam:
            total += self.ms_per_mparam * weights_m(arch, self.target.input_size)
        return max(total, 1e-6)

    # -- building ----------------------------------------------------------------------------
    def extend(self, archs: Iterable[Architecture], *, budget_s: float | None = None, passes: int = BLOCK_PASSES,
               on_progress: Callable[[int, int, Block, Any], None] | None = None) -> int:
        """Measure the blocks of ``archs`` that are missing; returns how many were measured.

        Every block is measured in ``passes`` sweeps over all missing blocks and its entry is the
        geometric mean of the sweeps' medians (see ``BLOCK_PASSES``). Each sweep's measurement is
        cached on its own, so an interrupted build resumes where it stopped.
        """
        from latency_models.measurement.measure import measure_module

        if passes < 1:
            raise LutError(f"passes must be >= 1, got {passes}")
        todo = self.missing(archs)
        if todo:
            _check_measurable(self.target)
        kwargs = {"budget_s": budget_s} if budget_s is not None else {}
        sweeps: dict[str, list[Any]] = {block.key: [] for block in todo}
        for sweep in range(passes):
            for i, block in enumerate(todo, start=1):
                key = f"lut:{block.key}" if sweep == 0 else f"lut:{block.key}:pass{sweep + 1}"
                m = measure_module(block.module().eval(), block.input_shape(self.target.batch), self.target,
                                   key=key, **kwargs)
                sweeps[block.key].append(m)
                if getattr(m, "versions", None):
                    self.provenance["measured_with"] = dict(m.versions)
                if getattr(m, "anchor_ms", None) is not None:  # blocks are at this reference speed
                    self.provenance["anchor_ms"] = m.anchor_ms
                if on_progress is not None:
                    on_progress(sweep * len(todo) + i, passes * len(todo), block, m)
        for key, ms in sweeps.items():
            medians = [float(m.median_ms) for m in ms]
            self.blocks[key] = {"ms": float(np.exp(np.mean(np.log(np.maximum(medians, 1e-9))))),
                                "cv": float(np.median([m.cv for m in ms])), "runs": int(sum(m.runs for m in ms)),
                                **({"passes_ms": medians} if len(medians) > 1 else {})}
        return len(todo)

    def calibrate(self, archs: Sequence[Architecture], latencies_ms: Sequence[float]) -> dict[str, float]:
        """Fit ``scale``, ``offset`` and ``ms_per_mparam`` on whole networks measured with ``measure``.

        Least squares on the relative error of ``measured ~ scale * block_sum + ms_per_mparam *
        weights + offset`` (:func:`fit_terms`: fewer terms for fewer networks). Returns the in-sample
        quality of the fit.
        """
        sums = np.array([self.block_sum(a) for a in archs], dtype=float)
        weights = np.array([weights_m(a, self.target.input_size) for a in archs], dtype=float)
        y = np.asarray(latencies_ms, dtype=float)
        self.scale, self.ms_per_mparam, self.offset = fit_terms(sums, weights, y) if len(y) else (1.0, 0.0, 0.0)
        self.networks = [{"arch": a.to_string(), "measured_ms": float(v), "block_sum_ms": float(s),
                          "weights_m": float(m)} for a, v, s, m in zip(archs, y, sums, weights)]
        from latency_models.estimation.predictor import accuracy

        fit_quality = accuracy(y, self.scale * sums + self.ms_per_mparam * weights + self.offset) if len(y) else {}
        return fit_quality

    # -- persistence -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "target": self.target.name,
                "fingerprint": self.target.fingerprint(), "scale": self.scale, "offset": self.offset,
                "ms_per_mparam": self.ms_per_mparam, "networks": self.networks, "quality": self.quality,
                "provenance": self.provenance, "blocks": dict(sorted(self.blocks.items()))}

    def save(self, path: str | Path | None = None) -> Path:
        path = Path(path) if path is not None else lut_path(self.target.name)
        self.provenance.setdefault("created", _now())
        self.provenance["updated"] = _now()
        self.provenance.setdefault("machine", platform.node())
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1))  # several processes may save at once


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _check_measurable(target: Target) -> None:
    if target.kind != "measure":
        raise LutError(f"target {target.name!r} is estimate-only: a lookup table needs block measurements")
    reason = "remote targets are measured through Ray, not locally" if target.is_remote else target.unavailable_reason()
    if reason:
        raise LutError(f"target {target.name!r} cannot be measured here: {reason}")


def read_file(path: str | Path, target: Target) -> LookupTable:
    """Load a table; a truncated or corrupted file raises a one-line :class:`LutFileError` naming it."""
    data = read_artifact(path, kind="lookup table", fmt=FORMAT, version=VERSION, error=LutFileError,
                         rebuild=f"delete it and run: shufflenas latency build-lut --target {target.name}")
    try:
        if data["target"] != target.name:
            raise ValueError(f"it is for target {data['target']!r}, not {target.name!r}")
        blocks = {str(k): {"ms": float(v["ms"]), **{f: v[f] for f in ("cv", "runs", "passes_ms") if f in v}}
                  for k, v in dict(data["blocks"]).items()}
        if any(not math.isfinite(b["ms"]) or b["ms"] < 0 for b in blocks.values()):
            raise ValueError("a block latency is negative or not finite")
        terms = (float(data["scale"]), float(data["offset"]), float(data.get("ms_per_mparam", 0.0)))
        if not all(math.isfinite(t) for t in terms):
            raise ValueError("scale, offset or ms_per_mparam is not finite")
        stale = data.get("fingerprint") not in (None, target.fingerprint())
        table = LookupTable(target, blocks, *terms, networks=list(data.get("networks", [])),
                            quality=dict(data.get("quality") or {}), provenance=dict(data.get("provenance") or {}))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise LutFileError(f"lookup table file {path} is invalid: {invalid_detail(exc)}") from None
    if stale:  # the target's settings changed since the table was built: start afresh
        return LookupTable(target)
    return table


def open_table(target: Target) -> LookupTable:
    """The table for ``target`` (an empty one when none exists yet)."""
    path = lut_path(target.name)
    return read_file(path, target) if path.exists() else LookupTable(target)


def load(target: Target) -> LookupTable | None:
    """Registry loader: the saved table for ``target``, or None when none was built."""
    path = lut_path(target.name)
    if not path.exists():
        return None
    table = read_file(path, target)
    if not table.blocks:
        return None
    if target.kind != "measure" or target.is_remote or target.unavailable_reason():
        table.auto_extend = False
    return table


def build(target: Target, archs: Sequence[Architecture], *, calibration_archs: Sequence[Architecture] = (),
          budget_s: float | None = None, block_budget_s: float | None = None, passes: int = BLOCK_PASSES,
          on_block: Callable[[int, int, Block, Any], None] | None = None,
          on_network: Callable[[int, int, Architecture, Any], None] | None = None) -> LookupTable:
    """Measure the missing blocks of ``archs`` (``block_budget_s`` each, in ``passes`` sweeps), calibrate
    on ``calibration_archs`` (whole networks, ``budget_s`` each), save."""
    from latency_models.measurement.measure import measure

    _check_measurable(target)
    table = open_table(target)
    table.auto_extend = False
    table.extend([*archs, *calibration_archs], budget_s=block_budget_s, passes=passes, on_progress=on_block)
    calib = list(calibration_archs)
    if calib:
        kwargs = {"budget_s": budget_s} if budget_s is not None else {}
        latencies = []
        for i, arch in enumerate(calib, start=1):
            m = measure(arch, target, **kwargs)
            latencies.append(float(m.median_ms))
            if on_network is not None:
                on_network(i, len(calib), arch, m)
        table.quality = {"calibration_fit": table.calibrate(calib, latencies), **leave_one_out(table.networks)}
    table.provenance["software"] = _versions()
    table.save()
    table.auto_extend = True
    return table


def weights_m(arch: Architecture, input_size: int = 224) -> float:
    """Millions of parameters of ``arch`` with a 1000-class head (what a network streams per run)."""
    from latency_models.costs.analytic import parameter_count

    return parameter_count(arch, input_size, NUM_CLASSES) / 1e6


def _versions() -> dict[str, str]:
    from latency_models.estimation.predictor import software_versions

    return software_versions()
