"""Reference normalisation: report a noisy machine's latencies at one fixed speed.

A shared machine speeds up and slows down with its neighbours. A *reference* network timed in
alternating chunks with the candidate sees the same slowdown, so the candidate/reference ratio is
far steadier than either median: on the 2-core development VM the worst run-to-run drift of the
median fell from 8.9% (raw) to 3.8% (benchmarks/results/measure.md, `benchmarks/measure_speed.py`).

A target with ``reference = "1.0x"`` therefore reports ``median_ms = relative * anchor``:
``relative`` is the median over chunk pairs of candidate / reference chunk medians, and the
*anchor* is the reference's own latency in the fastest machine state seen when it was drawn (the
lowest of 12 quarter-second medians). One anchor is drawn per target and software stack and kept
in the measurement cache, so every number in that cache shares it. Each measurement records the
anchor it was scaled with; after a redraw (``shufflenas latency anchor --redraw``), cached entries
are rescaled when read, so a cache never mixes two speeds.

Normalisation corrects moderate contention. Heavy contention hits small networks harder than the
reference, so a run that saw the machine more than ``MAX_SLOWDOWN`` times slower than at the
anchor is repeated, up to ``MAX_ATTEMPTS`` runs, and the least disturbed one is kept.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from latency_models.measurement import device_runtime
from latency_models.measurement.measure_cache import MeasurementCache
from latency_models.measurement.targets import Target

MAX_SLOWDOWN = 1.2
MAX_ATTEMPTS = 3
ANCHOR_CHUNKS = 12
ANCHOR_CHUNK_S = 0.25
SCALED = ("median_ms", "mean_ms", "p10_ms", "p90_ms", "iqr_ms")


@dataclasses.dataclass(frozen=True)
class Anchor:
    """The reference network's latency (ms) that every normalised measurement is reported at."""

    anchor_ms: float
    reference: str
    chunk_medians_ms: tuple[float, ...]
    drawn_at: float

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "chunk_medians_ms": list(self.chunk_medians_ms)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Anchor | None:
        """The anchor in a cache record, or ``None`` when the record is not a usable anchor."""
        try:
            anchor = cls(float(data["anchor_ms"]), str(data["reference"]),
                         tuple(float(v) for v in data.get("chunk_medians_ms", ())), float(data.get("drawn_at", 0.0)))
        except (KeyError, TypeError, ValueError):
            return None
        return anchor if anchor.anchor_ms > 0 else None


def anchor_fields(target: Target, versions: Mapping[str, Any]) -> dict[str, Any]:
    """The cache key of ``target``'s anchor (same software stack as its measurements)."""
    return {"key": f"anchor:{target.reference}", "target": target.name, "config": target.fingerprint(),
            "versions": dict(versions)}


def read_anchor(store: MeasurementCache, target: Target, versions: Mapping[str, Any]) -> Anchor | None:
    hit = store.get(anchor_fields(target, versions))
    return Anchor.from_dict(hit) if hit is not None else None


def draw_anchor(store: MeasurementCache, target: Target, versions: Mapping[str, Any], reference_bytes: bytes,
                input_shape: Sequence[int], *, replace: bool = False) -> Anchor:
    """Time the reference alone and store its anchor; without ``replace`` the first writer wins."""
    medians = device_runtime.chunk_medians(reference_bytes, input_shape, threads=target.threads,
                                           providers=target.providers, chunks=ANCHOR_CHUNKS, chunk_s=ANCHOR_CHUNK_S)
    drawn = Anchor(min(medians), str(target.reference), tuple(medians), time.time())
    fields = anchor_fields(target, versions)
    if replace:
        store.put(fields, drawn.to_dict())
        return drawn
    return Anchor.from_dict(store.setdefault(fields, drawn.to_dict())) or drawn


def normalise(run: Mapping[str, Any], anchor: Anchor, attempt: int = 1) -> dict[str, Any]:
    """A :func:`device_runtime.measure_onnx` result with a reference, reported at ``anchor``'s speed."""
    factor = run["relative"] * anchor.anchor_ms / run["median_ms"]
    return {**run, "raw_median_ms": run["median_ms"], "slowdown": 1.0 / factor, "reference": anchor.reference,
            "anchor_ms": anchor.anchor_ms, "attempts": attempt, **{k: run[k] * factor for k in SCALED}}


def rescale(record: Mapping[str, Any], anchor: Anchor) -> dict[str, Any]:
    """A stored normalised measurement moved to ``anchor`` (unchanged when it already uses it)."""
    used = record.get("anchor_ms")
    if not isinstance(used, (int, float)) or used <= 0 or used == anchor.anchor_ms:
        return dict(record)
    factor = anchor.anchor_ms / used
    return {**record, "anchor_ms": anchor.anchor_ms, "slowdown": record["slowdown"] / factor,
            **{k: record[k] * factor for k in SCALED}}


def _disturbance(run: Mapping[str, Any]) -> tuple[bool, float]:
    """Sort key of a run: stable ones first (:func:`device_runtime.unstable_reason`), then the
    least slowed down."""
    return (not run.get("stable", True), float(run["slowdown"]))


def measure_normalised(run_once: Callable[[], dict[str, Any]], anchor: Anchor) -> dict[str, Any]:
    """Run ``run_once`` (a measurement with the reference) until the machine was at most
    ``MAX_SLOWDOWN`` slower than at the anchor and the run's spread was stable, at most
    ``MAX_ATTEMPTS`` times; keep the least disturbed run."""
    best: dict[str, Any] | None = None
    for attempt in range(1, MAX_ATTEMPTS + 1):
        run = normalise(run_once(), anchor, attempt)
        if best is None or _disturbance(run) < _disturbance(best):
            best = run
        best = {**best, "attempts": attempt}
        if run["slowdown"] <= MAX_SLOWDOWN and run.get("stable", True):
            break
    assert best is not None
    return best
