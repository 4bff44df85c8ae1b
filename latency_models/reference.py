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

The ratio is steadiest between networks of similar size: contention slows a 1.3 ms network
differently from a 4 ms one. Against the 1.0x reference, a 2.6 ms candidate's ratio moved 7% (std/
mean over 7 runs) where against the 0.5x it moved 2.9%, while candidates of 5 ms and more moved
0.8-2.8% against the 1.0x and 1.4-7.8% against the 0.5x. A target may therefore list several
references (``reference = ["0.5x", "1.0x"]``): all are anchored together, in alternating windows,
and each measurement uses the one whose warm-up time is nearest the candidate's.

Normalisation corrects moderate contention. Heavy contention still disturbs it, so a run that saw
the machine more than ``MAX_SLOWDOWN`` times slower than at the anchor is repeated, up to
``MAX_ATTEMPTS`` runs, and the least disturbed one is kept.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from latency_models import device_runtime
from latency_models.measure_cache import MeasurementCache
from latency_models.targets import Target

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


def anchor_fields(target: Target, versions: Mapping[str, Any], reference: str) -> dict[str, Any]:
    """The cache key of one of ``target``'s anchors (same software stack as its measurements)."""
    return {"key": f"anchor:{reference}", "target": target.name, "config": target.fingerprint(),
            "versions": dict(versions)}


def read_anchors(store: MeasurementCache, target: Target, versions: Mapping[str, Any]) -> list[Anchor] | None:
    """The anchors of all of ``target``'s references, in its order, or ``None`` when one is missing."""
    anchors = []
    for name in target.reference:
        hit = store.get(anchor_fields(target, versions, name))
        anchor = Anchor.from_dict(hit) if hit is not None else None
        if anchor is None:
            return None
        anchors.append(anchor)
    return anchors


def draw_anchors(store: MeasurementCache, target: Target, versions: Mapping[str, Any],
                 reference_bytes: Sequence[bytes], input_shape: Sequence[int], *,
                 replace: bool = False) -> list[Anchor]:
    """Time the references alone, in alternating windows, and store one anchor each; without
    ``replace`` the first writer of each anchor wins."""
    medians = device_runtime.chunk_medians(list(reference_bytes), input_shape, threads=target.threads,
                                           providers=target.providers, chunks=ANCHOR_CHUNKS, chunk_s=ANCHOR_CHUNK_S)
    anchors = []
    for name, windows in zip(target.reference, medians):
        drawn = Anchor(min(windows), name, tuple(windows), time.time())
        fields = anchor_fields(target, versions, name)
        if replace:
            store.put(fields, drawn.to_dict())
        else:
            drawn = Anchor.from_dict(store.setdefault(fields, drawn.to_dict())) or drawn
        anchors.append(drawn)
    return anchors


def normalise(run: Mapping[str, Any], anchors: Sequence[Anchor], attempt: int = 1) -> dict[str, Any]:
    """A :func:`device_runtime.measure_onnx` result with references, reported at the anchored
    speed of the reference it used."""
    anchor = anchors[int(run.get("reference_index", 0))]
    factor = run["relative"] * anchor.anchor_ms / run["median_ms"]
    return {**run, "raw_median_ms": run["median_ms"], "slowdown": 1.0 / factor, "reference": anchor.reference,
            "anchor_ms": anchor.anchor_ms, "attempts": attempt, **{k: run[k] * factor for k in SCALED}}


def rescale(record: Mapping[str, Any], anchors: Sequence[Anchor]) -> dict[str, Any]:
    """A stored normalised measurement moved to the current anchor of its reference (unchanged
    when it already uses it)."""
    used = record.get("anchor_ms")
    anchor = next((a for a in anchors if a.reference == record.get("reference")), None)
    if anchor is None or not isinstance(used, (int, float)) or used <= 0 or used == anchor.anchor_ms:
        return dict(record)
    factor = anchor.anchor_ms / used
    return {**record, "anchor_ms": anchor.anchor_ms, "slowdown": record["slowdown"] / factor,
            **{k: record[k] * factor for k in SCALED}}


def measure_normalised(run_once: Callable[[], dict[str, Any]], anchors: Sequence[Anchor]) -> dict[str, Any]:
    """Run ``run_once`` (a measurement with the reference) until the machine was at most
    ``MAX_SLOWDOWN`` slower than at the anchor, at most ``MAX_ATTEMPTS`` times; keep the least
    disturbed run."""
    best: dict[str, Any] | None = None
    for attempt in range(1, MAX_ATTEMPTS + 1):
        run = normalise(run_once(), anchors, attempt)
        if best is None or run["slowdown"] < best["slowdown"]:
            best = run
        best = {**best, "attempts": attempt}
        if run["slowdown"] <= MAX_SLOWDOWN:
            break
    assert best is not None
    return best
