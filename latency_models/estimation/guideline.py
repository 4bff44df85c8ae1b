"""The guideline latency model: the paper's "MAC, not FLOPs" as a per-layer roofline.

For a batch, after BN/ReLU fusion (``latency_models.costs.analytic``)::

    ms = sum over layers of max(FLOPs_l / peak_l, MAC_l / bandwidth_l)   # G1, G2: memory access
         + kernel_overhead * kernels                                      # G3: fragmentation
         + elementwise_cost * elementwise elements                        # G4: element-wise ops
         + offset

``peak_l`` is the dense peak for convs and FC layers and a separate (usually much lower) peak for
depthwise convs; layers without FLOPs (split, concat, shuffle, pooling, add) cost their MAC at a
separate "movement" bandwidth (framework data-movement kernels are far slower per element than
a conv streaming its input). Seven positive numbers per target, fitted to measured (or
published) latencies in log space, so a 0.4 ms micro-benchmark counts as much as a 40 ms network.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from latency_models.estimation.quality import prediction_quality
from latency_models.costs.analytic import Layer, architecture_layers, is_misaligned, layer_costs
from latency_models.atomic import atomic_write_text
from latency_models.paths import SHIPPED_CALIBRATIONS, calibration_dir, safe_file
from search_space import Architecture
from search_space.errors import ShufflenasError, first_line

if TYPE_CHECKING:
    from latency_models.measurement.targets import Target

FORMAT = 1
PARAM_NAMES: tuple[str, ...] = ("peak_gmacs", "dw_gmacs", "bandwidth_gelems", "movement_gelems", "kernel_us",
                                "elementwise_ns", "offset_ms")
PARAM_DOCS: dict[str, str] = {
    "peak_gmacs": "dense conv/FC throughput, G multiply-adds per second",
    "dw_gmacs": "depthwise conv throughput, G multiply-adds per second",
    "bandwidth_gelems": "memory traffic of convs and FC layers, G elements (activations + weights) per second",
    "movement_gelems": "memory traffic of ops without FLOPs (split, concat, shuffle, add, pooling), G elements/s",
    "kernel_us": "fixed cost per kernel (launch, synchronisation, framework), microseconds",
    "elementwise_ns": "cost per element touched by element-wise work (BN, ReLU, add), nanoseconds",
    "offset_ms": "fixed cost per inference call, milliseconds",
    "misaligned_slowdown": "time factor for convs whose channels are off the CPU SIMD tile (1 = none)",
}
#: Parameters a calibration file may omit (older files, targets where they were not fitted).
OPTIONAL_PARAMS: dict[str, float] = {"misaligned_slowdown": 1.0}


class CalibrationError(ShufflenasError):
    """A calibration file is missing, corrupted or cannot be fitted."""


@dataclasses.dataclass(frozen=True)
class GuidelineParams:
    """The seven numbers of one target (physical units, all > 0)."""

    peak_gmacs: float
    dw_gmacs: float
    bandwidth_gelems: float
    movement_gelems: float
    kernel_us: float
    elementwise_ns: float
    offset_ms: float
    misaligned_slowdown: float = 1.0

    def coefficients(self) -> np.ndarray:
        """Milliseconds per: dense FLOP, depthwise FLOP, conv MAC element, moved element, kernel,
        element-wise element, call; then the misaligned-conv time factor."""
        return np.array([1e-6 / self.peak_gmacs, 1e-6 / self.dw_gmacs, 1e-6 / self.bandwidth_gelems,
                         1e-6 / self.movement_gelems, self.kernel_us * 1e-3, self.elementwise_ns * 1e-6,
                         self.offset_ms, self.misaligned_slowdown])

    @classmethod
    def from_coefficients(cls, theta: Sequence[float]) -> GuidelineParams:
        a, a_dw, b, m, k, e, c, *rest = (float(v) for v in theta)
        return cls(1e-6 / a, 1e-6 / a_dw, 1e-6 / b, 1e-6 / m, k * 1e3, e * 1e6, c, rest[0] if rest else 1.0)

    def to_dict(self) -> dict[str, float]:
        names = PARAM_NAMES + tuple(n for n, default in OPTIONAL_PARAMS.items() if getattr(self, n) != default)
        return {name: float(f"{getattr(self, name):.6g}") for name in names}


@dataclasses.dataclass(frozen=True)
class _Features:
    """Per-layer FLOPs/MAC of a set of samples, flattened, plus per-sample totals."""

    sample: np.ndarray      # layer -> sample index
    flops: np.ndarray
    depthwise: np.ndarray   # bool per layer
    misaligned: np.ndarray  # bool per layer: a conv off the SIMD channel tile
    mac: np.ndarray
    kernels: np.ndarray     # per sample
    elementwise: np.ndarray  # per sample
    n: int

    @classmethod
    def of(cls, layer_lists: Sequence[Sequence[Layer]], batches: Sequence[int]) -> _Features:
        sample, flops, depthwise, misaligned, mac, kernels, elementwise = [], [], [], [], [], [], []
        for i, (layers, batch) in enumerate(zip(layer_lists, batches)):
            table = layer_costs(layers, batch)
            sample.append(np.full(len(table), i))
            flops.append(table["flops"].to_numpy(float))
            mac.append(table["mac"].to_numpy(float))
            dw = ((table["kind"] == "conv") & (table["groups"] > 1) & (table["groups"] == table["c_in"]))
            depthwise.append(dw.to_numpy(bool))
            misaligned.append(np.array([is_misaligned(layer) for layer in layers], dtype=bool))
            kernels.append(float(table["kernels"].sum()))
            elementwise.append(float(table["elementwise"].sum()))
        return cls(np.concatenate(sample), np.concatenate(flops), np.concatenate(depthwise),
                   np.concatenate(misaligned), np.concatenate(mac), np.array(kernels), np.array(elementwise),
                   len(layer_lists))

    def _layer_times(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a, a_dw, b, m = theta[:4]
        slowdown = np.where(self.misaligned, theta[7] if len(theta) > 7 else 1.0, 1.0)
        compute = self.flops * np.where(self.depthwise, a_dw, a) * slowdown
        memory = self.mac * np.where(self.flops > 0, b, m) * slowdown
        return compute, memory

    def predict(self, theta: np.ndarray) -> np.ndarray:
        k, e, c = theta[4:7]
        per_layer = np.maximum(*self._layer_times(theta))
        return np.bincount(self.sample, per_layer, minlength=self.n) + k * self.kernels + e * self.elementwise + c

    def parts(self, theta: np.ndarray) -> dict[str, float]:
        """Milliseconds of sample 0 split into compute-bound, memory-bound, kernels, element-wise, offset."""
        k, e, c = theta[4:7]
        compute, memory = self._layer_times(theta)
        return {"compute_ms": float(compute[compute >= memory].sum()), "memory_ms": float(memory[memory > compute].sum()),
                "kernel_ms": float(k * self.kernels[0]), "elementwise_ms": float(e * self.elementwise[0]),
                "offset_ms": float(c)}


@dataclasses.dataclass(frozen=True)
class GuidelineModel:
    """A calibrated guideline model for one target; ``predict`` gives ms per batch."""

    params: GuidelineParams
    target_name: str
    batch: int = 1
    input_size: int = 224
    quality: dict[str, Any] = dataclasses.field(default_factory=dict)
    provenance: str = ""
    name: str = "guideline"

    @property
    def target(self) -> str:
        return self.target_name

    def for_target(self, target_name: str, batch: int, input_size: int) -> GuidelineModel:
        """The same parameters predicting for another name, batch or input size."""
        return dataclasses.replace(self, target_name=target_name, batch=batch, input_size=input_size)

    def predict_layers(self, layers: Sequence[Layer], batch: int | None = None) -> float:
        """Milliseconds for one pass of ``batch`` (default: the model's) through ``layers``."""
        features = _Features.of([layers], [batch or self.batch])
        return float(features.predict(self.params.coefficients())[0])

    def breakdown(self, layers: Sequence[Layer], batch: int | None = None) -> dict[str, float]:
        """Where the time goes: compute-bound and memory-bound layers, kernels, element-wise, offset."""
        return _Features.of([layers], [batch or self.batch]).parts(self.params.coefficients())

    def predict(self, arch: Architecture) -> float:
        """Estimated milliseconds per batch of ``arch`` at the model's batch and input size."""
        return self.predict_layers(architecture_layers(arch, self.input_size), self.batch)

    def to_json(self) -> str:
        data = {"model": self.name, "format": FORMAT, "target": self.target_name, "batch": self.batch,
                "input_size": self.input_size, "params": self.params.to_dict(), "provenance": self.provenance,
                "quality": self.quality}
        return json.dumps(data, indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "calibration") -> GuidelineModel:
        """Parse a calibration; any problem is a one-line :class:`CalibrationError` naming ``source``."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("model", "guideline") != "guideline":
                raise ValueError("not a guideline calibration")
            raw = data["params"]
            params = GuidelineParams(**{name: float(raw[name]) for name in PARAM_NAMES},
                                     **{name: float(raw.get(name, default)) for name, default in OPTIONAL_PARAMS.items()})
            if not all(math.isfinite(v) and v > 0 for v in dataclasses.astuple(params)):
                raise ValueError("parameters must be finite and > 0")
            return cls(params, str(data["target"]), int(data.get("batch", 1)), int(data.get("input_size", 224)),
                       dict(data.get("quality") or {}), str(data.get("provenance", "")))
        except (ValueError, KeyError, TypeError) as exc:
            reason = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            detail = f"missing key {reason!r}" if isinstance(exc, KeyError) else first_line(reason)
            raise CalibrationError(f"corrupted calibration file {source}: {detail}") from None

    def save(self, path: str | Path) -> Path:
        return atomic_write_text(path, self.to_json())


# --------------------------------------------------------------------------------------------- fitting

@dataclasses.dataclass(frozen=True)
class FitSample:
    """One measured latency: the layers run, milliseconds per batch, and the batch it ran at."""

    layers: tuple[Layer, ...]
    ms: float
    batch: int | None = None
    weight: float = 1.0
    label: str = ""


def _as_samples(samples: Iterable[Any]) -> list[FitSample]:
    out = []
    for sample in samples:
        if not isinstance(sample, FitSample):
            sample = FitSample(tuple(sample[0]), float(sample[1]), *sample[2:])
        if not (math.isfinite(sample.ms) and sample.ms > 0):
            raise CalibrationError(f"measured latency must be > 0 ms, got {sample.ms} ({sample.label or 'sample'})")
        out.append(sample)
    return out


def _initial(features: _Features, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Non-negative least squares on the linear relaxation (sum instead of max), relative errors."""
    from scipy.optimize import nnls

    dense = np.bincount(features.sample, np.where(features.depthwise, 0, features.flops), minlength=features.n)
    dw = np.bincount(features.sample, np.where(features.depthwise, features.flops, 0), minlength=features.n)
    has_flops = features.flops > 0
    mac = np.bincount(features.sample, np.where(has_flops, features.mac, 0), minlength=features.n)
    moved = np.bincount(features.sample, np.where(has_flops, 0, features.mac), minlength=features.n)
    design = np.column_stack([dense, dw, mac, moved, features.kernels, features.elementwise, np.ones(features.n)])
    scale = np.maximum(np.abs(design).max(axis=0), 1e-30)
    rows = np.sqrt(w)[:, None] / y[:, None]
    theta, _ = nnls(design / scale * rows, np.sqrt(w))
    return theta / scale


def fit(samples: Iterable[Any], batch: int = 1, *, target_name: str = "", input_size: int = 224,
        provenance: str = "", tie_depthwise: bool | None = None, fit_alignment: bool = False) -> GuidelineModel:
    """Fit the seven parameters to measured latencies (log-space least squares, positive parameters).

    ``samples`` are :class:`FitSample` or ``(layers, measured_ms[, batch[, weight[, label]]])``
    tuples; a sample without a batch ran at ``batch``. When no sample has a depthwise conv the
    depthwise peak cannot be identified and is tied to the dense peak (``tie_depthwise``).
    ``fit_alignment`` also fits the slowdown of convs off the SIMD channel tile (a CPU effect;
    calibrations from measurements on a CPU use it, the paper calibrations do not).
    Quality (in-sample MAPE, Spearman, max error) is stored under ``quality["fit"]``.
    """
    from scipy.optimize import least_squares

    data = _as_samples(samples)
    if len(data) < 3:
        raise CalibrationError(f"need at least 3 measured samples to fit the guideline model, got {len(data)}")
    features = _Features.of([s.layers for s in data], [s.batch or batch for s in data])
    y = np.array([s.ms for s in data])
    w = np.array([s.weight for s in data], float)
    if tie_depthwise is None:
        tie_depthwise = not bool((features.flops * features.depthwise).any())
    fit_alignment = fit_alignment and bool(features.misaligned.any())

    def expand(x: np.ndarray) -> np.ndarray:
        # x = log of (a, a_dw / a, b, m, k, e, c[, slowdown]): depthwise convs are never faster per
        # FLOP than dense ones, and misaligned convs never faster than aligned ones
        if tie_depthwise:
            x = np.insert(x, 1, 0.0)
        theta = np.exp(x)
        theta[1] *= theta[0]
        return theta

    def residuals(x: np.ndarray) -> np.ndarray:
        return np.sqrt(w) * (np.log(features.predict(expand(x))) - np.log(y))

    typical = np.array([np.median(features.flops[features.flops > 0]) if (features.flops > 0).any() else 1.0,
                        np.median(features.flops[features.depthwise]) if features.depthwise.any() else 1.0,
                        np.median(features.mac), np.median(features.mac), np.median(features.kernels) or 1.0,
                        np.median(features.elementwise) or 1.0, 1.0])
    # a missing term starts where it alone would explain ~1% of the median sample
    fallback = 0.01 * float(np.median(y)) / np.maximum(typical, 1e-30)
    best = None
    for base in (_initial(features, y, w), np.zeros(7)):
        theta = np.where(base > 0, base, fallback)
        theta[1] = max(theta[1], theta[0])
        x0 = np.log(np.concatenate([[theta[0], theta[1] / theta[0]], theta[2:]]))
        lower = np.full(7, -np.inf)
        lower[1] = 0.0
        if fit_alignment:
            x0, lower = np.append(x0, np.log(1.5)), np.append(lower, 0.0)
        if tie_depthwise:
            x0, lower = np.delete(x0, 1), np.delete(lower, 1)
        x0 = np.maximum(x0, lower)
        result = least_squares(residuals, x0, bounds=(lower, np.full(len(x0), np.inf)), method="trf", max_nfev=2000)
        if best is None or result.cost < best.cost:
            best = result
    theta = expand(best.x)
    params = GuidelineParams.from_coefficients(theta)
    predicted = features.predict(theta)
    quality: dict[str, Any] = {"fit": prediction_quality(y, predicted), "depthwise_tied": bool(tie_depthwise),
                               "alignment_fitted": fit_alignment}
    return GuidelineModel(params, target_name, batch, input_size, quality, provenance)


# --------------------------------------------------------------------------------------------- loading

def calibration_paths(target: Any) -> list[Path]:
    """Where a target's calibration is looked for: the user's files first (the target's own name,
    then its ``calibration`` name, so an estimate-only target can use a board's calibration copied
    back from it), then the shipped one."""
    name = target.name
    calibration = getattr(target, "calibration", None) or name
    names = dict.fromkeys((name, calibration))
    return [*(safe_file(calibration_dir(), n, ".json", "calibration") for n in names),
            safe_file(SHIPPED_CALIBRATIONS, calibration, ".json", "calibration")]


def load_file(path: str | Path) -> GuidelineModel:
    """Read one calibration file (one-line error naming the file if it cannot be used)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise CalibrationError(f"calibration file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CalibrationError(f"cannot read calibration file {path}: {exc}") from None
    return GuidelineModel.from_json(text, source=str(path))


def load(target: Target) -> GuidelineModel | None:
    """The guideline model calibrated for ``target`` (registry entry "guideline"), or None.

    The model predicts at the target's batch and input size, whatever it was fitted on.
    """
    for path in calibration_paths(target):
        if path.is_file():
            model = load_file(path)
            return model.for_target(target.name, int(getattr(target, "batch", model.batch) or model.batch),
                                    int(getattr(target, "input_size", model.input_size) or model.input_size))
    return None
