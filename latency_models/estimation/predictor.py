"""Learned latency predictor: gradient boosting on analytic features, trained on measured networks.

Model: a non-negative linear model on physical costs (pointwise/depthwise/dense FLOPs, data
movement, kernel count, element-wise volume, and the guideline estimate when the target has one)
gives a base latency that extrapolates sensibly; a ``GradientBoostingRegressor`` then learns the
log of measured / base from every feature in :mod:`latency_models.estimation.features`. So the prediction is
``base * exp(boost)``: log latency, learned, without the trees' inability to extrapolate beyond the
training range.

Persistence avoids pickle: the JSON file stores the training set (architecture strings and measured
milliseconds), the hyper-parameters, provenance and the held-out quality. Loading recomputes the
features and refits, which takes well under a second for a few hundred rows and is deterministic on one
machine (another CPU's floating-point kernels moved them by up to 4e-4 relative: tests/test_compat.py).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import platform
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from latency_models.estimation.quality import prediction_quality
from latency_models.atomic import atomic_write_text
from latency_models.artifacts import invalid_detail, read_artifact
from latency_models.estimation.features import FEATURE_NAMES, feature_frame
from latency_models.paths import calibration_dir, safe_file
from search_space import Architecture
from search_space.errors import ShufflenasError

if TYPE_CHECKING:
    from latency_models.measurement.targets import Target

FORMAT = "shufflenas-latency-predictor"
VERSION = 1
BASE_FEATURES = ("pointwise_flops", "depthwise_flops", "depthwise_mac", "dense_flops", "fc_flops", "movement_mac",
                 "pool_mac", "kernels", "elementwise", "misaligned_pointwise_flops", "misaligned_depthwise_mac")
HYPER = {"n_estimators": 300, "learning_rate": 0.05, "max_depth": 3, "subsample": 0.8, "min_samples_leaf": 3,
         "random_state": 0}
HOLDOUT_FRACTION = 0.25


class PredictorFileError(ShufflenasError):
    """A predictor file is missing, truncated or not a predictor."""


def predictor_path(target_name: str) -> Path:
    return safe_file(calibration_dir(), target_name, ".predictor.json", "target")


# -- quality metrics (shared with the accuracy benchmark) ---------------------------------------------
#: The project's one quality function, under the name this module has always exported.
accuracy = prediction_quality


# -- the model ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class LatencyPredictor:
    """A fitted predictor for one target; ``predict`` gives milliseconds per batch."""

    target: str
    input_size: int
    batch: int
    archs: list[Architecture]
    latencies_ms: list[float]
    guideline: Any = None                  # a guideline estimator used as a feature, or None
    quality: dict[str, Any] = dataclasses.field(default_factory=dict)
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)
    name: str = "predictor"

    def __post_init__(self) -> None:
        if len(self.archs) < 4:
            raise ShufflenasError(f"the latency predictor needs at least 4 measured architectures, got {len(self.archs)}")
        self._fit()

    # features: analytic ones plus the guideline estimate when available
    def _frame(self, archs: Sequence[Architecture]) -> pd.DataFrame:
        frame = feature_frame(archs, self.input_size, self.batch)
        if self.guideline is not None:
            frame["guideline_ms"] = [float(self.guideline.predict(a)) for a in archs]
        return frame

    def _base_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        cols = list(BASE_FEATURES) + (["guideline_ms"] if "guideline_ms" in frame else [])
        return frame[cols].to_numpy(dtype=float) / self._scale

    def _fit(self) -> None:
        from sklearn.ensemble import GradientBoostingRegressor
        from sklearn.linear_model import LinearRegression

        frame = self._frame(self.archs)
        y = np.asarray(self.latencies_ms, dtype=float)
        if not np.all(np.isfinite(y)) or np.any(y <= 0):
            raise ShufflenasError("measured latencies must be positive numbers")
        cols = list(BASE_FEATURES) + (["guideline_ms"] if "guideline_ms" in frame else [])
        self._scale = np.maximum(frame[cols].abs().max().to_numpy(dtype=float), 1e-12)
        self._linear = LinearRegression(positive=True).fit(self._base_matrix(frame), y)
        base = self._base(frame)
        self._columns = list(frame.columns)
        self._boost = GradientBoostingRegressor(**HYPER).fit(np.log1p(frame.to_numpy(dtype=float)), np.log(y / base))

    def _base(self, frame: pd.DataFrame) -> np.ndarray:
        floor = 0.05 * float(np.min(self.latencies_ms))
        return np.maximum(self._linear.predict(self._base_matrix(frame)), floor)

    def predict_many(self, archs: Sequence[Architecture]) -> np.ndarray:
        """Milliseconds per batch for several architectures (one feature pass)."""
        frame = self._frame(archs)[self._columns]
        return self._base(frame) * np.exp(self._boost.predict(np.log1p(frame.to_numpy(dtype=float))))

    def predict(self, arch: Architecture) -> float:
        return float(self.predict_many([arch])[0])

    # -- persistence ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION, "target": self.target, "input_size": self.input_size,
            "batch": self.batch, "uses_guideline": self.guideline is not None, "hyper": HYPER,
            "features": list(FEATURE_NAMES), "quality": self.quality, "provenance": self.provenance,
            "training": [{"arch": a.to_string(), "latency_ms": float(ms)} for a, ms in zip(self.archs, self.latencies_ms)],
        }

    def save(self, path: str | Path | None = None) -> Path:
        """Write the JSON file (atomically); default ``calibration_dir()/<target>.predictor.json``."""
        path = Path(path) if path is not None else predictor_path(self.target)
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1))


def _guideline_for(target: Target | None) -> Any:
    if target is None:
        return None
    try:
        from latency_models.estimation import guideline
    except ModuleNotFoundError:
        return None
    try:
        return guideline.load(target)
    except ShufflenasError:
        return None


def software_versions() -> dict[str, str]:
    import sklearn

    versions = {"python": platform.python_version(), "numpy": np.__version__, "scikit-learn": sklearn.__version__}
    for module in ("onnxruntime", "torch"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            pass
    return versions


def fit(target: Target, archs: Sequence[Architecture], latencies_ms: Sequence[float], *,
        holdout: float = HOLDOUT_FRACTION, seed: int = 0, use_guideline: bool = True,
        provenance: dict[str, Any] | None = None) -> LatencyPredictor:
    """Fit on measured architectures; the quality comes from a held-out split, then all rows are used."""
    archs, latencies_ms = list(archs), [float(v) for v in latencies_ms]
    if len(archs) != len(latencies_ms):
        raise ShufflenasError("architectures and latencies differ in length")
    guideline = _guideline_for(target) if use_guideline else None
    quality: dict[str, Any] = {}
    n_test = max(3, int(round(holdout * len(archs)))) if holdout > 0 else 0
    if n_test and len(archs) - n_test >= 4:
        order = np.random.default_rng(seed).permutation(len(archs))
        test, train = order[:n_test], order[n_test:]
        model = LatencyPredictor(target.name, target.input_size, target.batch, [archs[i] for i in train],
                                 [latencies_ms[i] for i in train], guideline)
        predicted = model.predict_many([archs[i] for i in test])
        quality = accuracy([latencies_ms[i] for i in test], predicted)
        quality["n_train"] = int(len(train))
    quality["guideline_feature"] = guideline is not None
    info = {"created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "machine": platform.node(),
            "software": software_versions(), **(provenance or {})}
    return LatencyPredictor(target.name, target.input_size, target.batch, archs, latencies_ms, guideline,
                            quality, info)


def read_file(path: str | Path, target: Target | None = None) -> LatencyPredictor:
    """Load a predictor JSON file (refits the model); a bad file raises a one-line error naming it."""
    data = read_artifact(path, kind="latency predictor", fmt=FORMAT, version=VERSION, error=PredictorFileError,
                         rebuild="retrain it with: shufflenas latency train-predictor")
    try:
        archs = [Architecture.from_string(row["arch"]) for row in data["training"]]
        latencies = [float(row["latency_ms"]) for row in data["training"]]
        guideline = _guideline_for(target) if data.get("uses_guideline") else None
        return LatencyPredictor(str(data["target"]), int(data["input_size"]), int(data["batch"]), archs, latencies,
                                guideline, dict(data.get("quality") or {}), dict(data.get("provenance") or {}))
    except (KeyError, TypeError, ValueError, ShufflenasError) as exc:
        raise PredictorFileError(f"latency predictor file {path} is invalid: {invalid_detail(exc)}") from None


_LOADED: dict[tuple, LatencyPredictor] = {}


def load(target: Target) -> LatencyPredictor | None:
    """The trained predictor for ``target`` (registry loader), or None when none was trained.

    Refitting takes about a second, and ``estimate()`` loads per call, so a fitted predictor is kept
    per process until its file (or the guideline calibration it uses as a feature) changes.
    """
    path = predictor_path(target.name)
    if not path.exists():
        return None
    stat = path.stat()
    guideline = _guideline_for(target)
    key = (str(path), stat.st_mtime_ns, stat.st_size, target, guideline.to_json() if guideline is not None else None)
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = read_file(path, target)
    return _LOADED[key]


def train(target: Target, archs: Sequence[Architecture], *, budget_s: float | None = None,
          on_progress: Callable[[int, int, Architecture, Any], None] | None = None, seed: int = 0,
          save: bool = True) -> LatencyPredictor:
    """Measure ``archs`` on ``target`` (cached), fit, and save the predictor next to the calibrations."""
    from latency_models.measurement.measure import measure

    if target.kind != "measure":
        raise ShufflenasError(f"target {target.name!r} is estimate-only: a predictor needs measurements")
    reason = "remote targets are measured through Ray, not locally" if target.is_remote else target.unavailable_reason()
    if reason:
        raise ShufflenasError(f"target {target.name!r} cannot be measured here: {reason}")
    latencies, versions = [], {}
    kwargs = {"budget_s": budget_s} if budget_s is not None else {}
    for i, arch in enumerate(archs, start=1):
        m = measure(arch, target, **kwargs)
        latencies.append(float(m.median_ms))
        versions = dict(getattr(m, "versions", {}) or {})
        if on_progress is not None:
            on_progress(i, len(archs), arch, m)
    predictor = fit(target, archs, latencies, seed=seed,
                    provenance={"measured_with": versions, "samples": len(archs), "seed": seed})
    if save:
        predictor.save()
    return predictor
