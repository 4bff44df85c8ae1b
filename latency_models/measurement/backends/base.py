"""The latency-backend protocol, the typed statistics a timing returns, and the backend registry.

A backend is what turns a model into milliseconds on one runtime (ONNX Runtime, eager torch, ...).
Everything runtime-specific lives in its own module here; :mod:`latency_models.measurement.measure`
only exports, caches and assembles the :class:`~latency_models.measurement.measure.Measurement`.

The registry knows each built-in backend by its file name (``backends/<name>.py`` defining
``BACKEND``) without importing it, so reading a targets file stays cheap; a backend is imported
the first time :func:`get_backend` asks for it. :func:`register_backend` adds one at run time.
Target validation reads the names from :data:`BACKENDS`, so ``backend = "x"`` in a TOML file is
checked against exactly the backends that exist.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from search_space.errors import ShufflenasError

if TYPE_CHECKING:
    from latency_models.measurement.reference import Anchor
    from latency_models.measurement.targets import Target


class MeasurementError(ShufflenasError):
    """A measurement cannot run: estimate-only target, unavailable device, remote target, bad model."""


class UnknownBackendError(ShufflenasError):
    """No latency backend has the requested name."""


@dataclasses.dataclass(frozen=True)
class RunStats:
    """Robust statistics of one timing (milliseconds per batch), as every backend returns them.

    ``versions`` holds what the run itself learned about the software (e.g. the ONNX Runtime
    providers actually enabled); it is merged into the measurement's versions. The optional fields
    are set by reference normalisation (``raw_median_ms`` ... ``anchor_ms``), by repeated attempts
    (``attempts``, ``stable``, ``unstable``) and by the process that timed (``niceness``, ``load_avg``).
    """

    median_ms: float
    mean_ms: float
    p10_ms: float
    p90_ms: float
    iqr_ms: float
    cv: float
    runs: int
    raw_median_ms: float | None = None
    slowdown: float | None = None
    reference: str | None = None
    attempts: int = 1
    anchor_ms: float | None = None
    stable: bool = True
    unstable: str | None = None
    niceness: int | None = None
    load_avg: list[float] | None = None
    versions: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def measurement_fields(self) -> dict[str, Any]:
        """Every field a :class:`Measurement` holds under the same name (all but ``versions``)."""
        data = self.to_dict()
        del data["versions"]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunStats:
        """The statistics in any result dict (a ``device_runtime`` result, a cache record); other keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """The network to time, in whichever form a backend needs: ``onnx()`` bytes or a torch ``module()``.

    Both are made on demand, so a backend that times the eager module never pays for an export.
    """

    key: str
    onnx: Callable[[], bytes]
    module: Callable[[], Any]


@runtime_checkable
class LatencyBackend(Protocol):
    """Times a model on a target's runtime. Subclass :class:`Backend` for the optional capabilities."""

    name: str

    def unavailable_reason(self, target: Target) -> str | None:
        """Why this process cannot time ``target`` (a missing runtime, provider or device), or ``None``."""

    def versions(self, target: Target) -> dict[str, Any]:
        """The software and hardware a number on ``target`` depends on (part of its cache key)."""

    def time(self, model: ModelSource, input_shape: Sequence[int], target: Target, budget: float, *,
             anchor: Anchor | None = None) -> RunStats:
        """Warm up, then time ``model`` for about ``budget`` seconds; repeat a disturbed run."""


class Backend:
    """Defaults for a backend's optional capabilities; a backend sets only what differs.

    - ``supports_reference``: targets may set ``reference`` (a network timed alongside every
      measurement, whose anchor the backend draws with :meth:`draw_anchor`);
    - ``supports_remote``: targets may set ``resources`` and be timed on a Ray node by
      :mod:`evaluator.remote_latency` (which runs :mod:`latency_models.measurement.device_runtime`);
    - :meth:`default_providers`: ``None`` when the ``providers`` key does not apply, else the
      providers a target without the key gets.
    """

    name = "backend"
    supports_reference = False
    supports_remote = False

    def default_providers(self, device: str) -> tuple[str, ...] | None:
        return None

    def draw_anchor(self, target: Target, store: Any, versions: Mapping[str, Any], *, replace: bool = False) -> Anchor:
        raise MeasurementError(f"the {self.name} backend has no reference normalisation")

    def __repr__(self) -> str:
        return f"<latency backend {self.name}>"


class _Registry(Mapping[str, LatencyBackend]):
    """Backend names -> backends; built-ins are found by file name and imported on first use."""

    def __init__(self) -> None:
        folder = Path(__file__).resolve().parent
        self._modules = {info.name: f"{__package__}.{info.name}" for info in pkgutil.iter_modules([str(folder)])
                         if info.name not in ("base",) and not info.name.startswith("_")}
        self._loaded: dict[str, LatencyBackend] = {}

    def __iter__(self) -> Iterator[str]:
        return iter(sorted({*self._modules, *self._loaded}))

    def __len__(self) -> int:
        return len({*self._modules, *self._loaded})

    def __contains__(self, name: object) -> bool:
        return name in self._modules or name in self._loaded

    def __getitem__(self, name: str) -> LatencyBackend:
        if name not in self._loaded:
            if name not in self._modules:
                raise KeyError(name)
            backend = importlib.import_module(self._modules[name]).BACKEND
            if backend.name != name:  # pragma: no cover - a packaging mistake, not a user error
                raise RuntimeError(f"backends/{name}.py defines a backend named {backend.name!r}")
            self._loaded[name] = backend
        return self._loaded[name]

    def register(self, backend: LatencyBackend, *, replace: bool = False) -> LatencyBackend:
        if not isinstance(backend, LatencyBackend):
            raise TypeError(f"{backend!r} does not implement the LatencyBackend protocol")
        if backend.name in self and not replace:
            raise ValueError(f"a latency backend named {backend.name!r} already exists (pass replace=True)")
        self._loaded[backend.name] = backend
        return backend

    def unregister(self, name: str) -> None:
        """Forget a backend registered at run time (built-in files stay known)."""
        self._loaded.pop(name, None)


#: Every latency backend by name: ``"onnxruntime" in BACKENDS``, ``", ".join(BACKENDS)``.
BACKENDS = _Registry()


def register_backend(backend: LatencyBackend, *, replace: bool = False) -> LatencyBackend:
    """Make ``backend`` available to targets as ``backend = "<its name>"`` (returns it, so it can decorate)."""
    return BACKENDS.register(backend, replace=replace)


def get_backend(name: str) -> LatencyBackend:
    """The backend called ``name``; one line naming the known ones when there is none."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise UnknownBackendError(f"unknown latency backend {name!r} (known: {', '.join(BACKENDS)})") from None


def capability(backend: LatencyBackend, name: str, default: Any = False) -> Any:
    """A backend's optional capability (:class:`Backend`), for protocol-only backends too."""
    return getattr(backend, name, default)


def niced_policy(target: Target) -> str:
    """What a niced measuring process does on ``target``: "warn" (the default) or "refuse"."""
    return str(getattr(target, "niced", "warn") or "warn")
