"""Named latency targets: where and how a latency number is obtained.

A target is data, not code: the built-ins live in ``latency_models/targets.toml`` and a user TOML
(``path=`` / ``--targets-file``, or ``$SHUFFLENAS_TARGETS``) adds targets or overrides keys of
existing ones. ``kind = "measure"`` targets are timed on real hardware (locally, or on a remote
board through Ray when ``resources`` names a custom Ray resource); ``kind = "estimate"`` targets
(the paper's GTX 1080Ti and Snapdragon 810) can only be predicted by a calibrated model and are
labelled as estimates wherever they appear.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from latency_models.artifacts import read_toml
from latency_models.measurement.backends.base import BACKENDS, capability, get_backend
from latency_models.paths import SAFE_NAME_RULE, unsafe_name_reason
from search_space.errors import ShufflenasError

BUILTIN_FILE = Path(__file__).resolve().parent.parent / "targets.toml"
ENV_VAR = "SHUFFLENAS_TARGETS"

Kind = Literal["measure", "estimate"]
#: A latency backend's name: a file of ``latency_models/measurement/backends`` (see :data:`BACKENDS`).
Backend = str
Device = Literal["cpu", "cuda"]

KINDS = ("measure", "estimate")
DEVICES = ("cpu", "cuda")

#: Upper bounds on a target's numeric keys: far above any real device, low enough that a typo
#: (``input_size = 100000``) is refused when the file is read instead of exhausting memory later.
LIMITS = {"threads": 1024, "batch": 4096, "input_size": 4096}


class TargetError(ShufflenasError):
    """A targets file or a target definition is invalid."""


class UnknownTargetError(TargetError):
    """No target has the requested name."""


@dataclasses.dataclass(frozen=True)
class Target:
    """One latency target (see the module docstring); immutable so it can key caches."""

    name: str
    description: str
    kind: Kind
    backend: Backend | None
    device: Device
    providers: tuple[str, ...] = ()
    threads: int = 1
    batch: int = 1
    input_size: int = 224
    resources: dict[str, float] = dataclasses.field(default_factory=dict)
    calibration: str | None = None
    reference: str | None = None
    #: True in a process that runs on the board ``resources`` names (``--on-device``, see
    #: :meth:`on_this_device`): it measures locally instead of through Ray. Not a TOML key.
    on_device: bool = False
    #: What a measuring process run at a raised niceness does: "warn" (default) or "refuse".
    niced: str = "warn"

    def __hash__(self) -> int:  # resources is a dict: hash its items instead
        return hash((self.name, self.kind, self.backend, self.device, self.providers, self.threads, self.batch,
                     self.input_size, tuple(sorted(self.resources.items())), self.calibration, self.reference,
                     self.on_device))

    @property
    def is_estimate(self) -> bool:
        return self.kind == "estimate"

    @property
    def is_remote(self) -> bool:
        """True when a Ray node carrying ``resources`` must run the measurement (not on that node itself)."""
        return bool(self.resources) and not self.on_device

    def on_this_device(self) -> Target:
        """This target as measured by the board it names, from a shufflenas install on that board.

        The fingerprint is unchanged (it keeps ``resources``), so a lookup table or predictor built
        on the board and copied to the search machine is accepted there as the target's own.
        """
        return dataclasses.replace(self, on_device=True)

    def fingerprint(self) -> dict[str, Any]:
        """Everything about the target that changes a measured number (for cache keys)."""
        data: dict[str, Any] = {"backend": self.backend, "device": self.device, "providers": list(self.providers),
                                "threads": self.threads, "batch": self.batch, "input_size": self.input_size,
                                "resources": dict(sorted(self.resources.items()))}
        if self.reference is not None:  # only when set, so targets without one keep their cache keys
            data["reference"] = self.reference
        return data

    def to_dict(self) -> dict[str, Any]:
        """The target as its TOML keys (plus ``name``); ``on_device`` is a role of the process, not a key."""
        data = dataclasses.asdict(self)
        data["providers"] = list(self.providers)
        del data["on_device"]
        return data

    def unavailable_reason(self) -> str | None:
        """Why this process cannot measure the target locally, or ``None`` when it can.

        Estimate-only targets have nothing to measure and return ``None`` (the estimator decides
        whether a calibration exists). Remote targets return ``None`` too: whether a board is
        connected is a question for the Ray cluster, asked when a measurement is submitted.
        """
        if self.is_estimate or self.is_remote:
            return None
        if self.backend not in BACKENDS:  # pragma: no cover - validation rejects it
            return f"unknown backend {self.backend!r}"
        return get_backend(self.backend).unavailable_reason(self)


def _default_providers(backend: Any, device: str) -> tuple[str, ...] | None:
    """The providers a target of ``backend`` gets without the key; ``None``: the key does not apply."""
    method = getattr(backend, "default_providers", None)
    return method(device) if method is not None else None


def _capable(what: str) -> str:
    """The backends with a capability, named for a message ("onnxruntime", or "a or b")."""
    def has(backend: Any) -> bool:
        if what == "providers":
            return _default_providers(backend, "cpu") is not None
        return bool(capability(backend, what))

    return " or ".join(name for name in BACKENDS if has(BACKENDS[name])) or "no"


_FIELDS = {f.name for f in dataclasses.fields(Target)} - {"name", "on_device"}


def _check(name: str, table: Mapping[str, Any], origin: str) -> Target:
    where = f"target {name!r} in {origin}"
    if unsafe_name_reason(name) is not None:  # names become file names (<name>.lut.json, ...)
        raise TargetError(f"{where}: a target name must be {SAFE_NAME_RULE}")
    unknown = sorted(set(table) - _FIELDS)
    if unknown:
        raise TargetError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_FIELDS))})")

    def text(key: str, default: Any = None, required: bool = False) -> Any:
        value = table.get(key, default)
        if value is None:
            if required:
                raise TargetError(f"{where}: missing required key {key!r}")
            return None
        if not isinstance(value, str) or not value:
            raise TargetError(f"{where}: {key} must be a non-empty string, got {value!r}")
        return value

    def choice(key: str, options: tuple[str, ...], default: Any = None, required: bool = True) -> Any:
        value = text(key, default, required)
        if value is not None and value not in options:
            raise TargetError(f"{where}: {key} must be one of {', '.join(options)}, got {value!r}")
        return value

    def integer(key: str, default: int, minimum: int) -> int:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TargetError(f"{where}: {key} must be an integer, got {value!r}")
        if value < minimum:
            raise TargetError(f"{where}: {key} must be >= {minimum}, got {value}")
        if value > LIMITS[key]:
            raise TargetError(f"{where}: {key} must be <= {LIMITS[key]}, got {value}")
        return value

    kind = choice("kind", KINDS)
    description = text("description", required=True)
    backend = choice("backend", tuple(BACKENDS), required=kind == "measure")
    if kind == "estimate" and backend is not None:
        raise TargetError(f"{where}: an estimate-only target has no backend (got {backend!r})")
    runtime = get_backend(backend) if backend is not None else None
    device = choice("device", DEVICES)
    providers = table.get("providers", [])
    if not isinstance(providers, (list, tuple)) or not all(isinstance(p, str) and p for p in providers):
        raise TargetError(f"{where}: providers must be a list of provider names, got {providers!r}")
    default_providers = _default_providers(runtime, device)
    if default_providers is not None and not providers:
        providers = list(default_providers)
    if default_providers is None and providers:
        raise TargetError(f"{where}: providers only apply to the {_capable('providers')} backend")
    resources = table.get("resources", {})
    if not isinstance(resources, Mapping) or not all(
            isinstance(k, str) and k and isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
            for k, v in resources.items()):
        raise TargetError(f"{where}: resources must be a table of positive numbers, e.g. {{\"device:rpi4\" = 1}}, "
                          f"got {resources!r}")
    if resources and not capability(runtime, "supports_remote"):
        raise TargetError(f"{where}: remote targets (resources) run the {_capable('supports_remote')} backend only")
    calibration = text("calibration")
    if calibration is not None and unsafe_name_reason(calibration) is not None:  # a file name too
        raise TargetError(f"{where}: calibration {calibration!r}: a calibration name must be {SAFE_NAME_RULE}")
    reference = text("reference")
    if reference is not None and reference.lower() == "none":  # lets a user file switch a built-in's off
        reference = None
    if reference is not None:
        if kind != "measure" or not capability(runtime, "supports_reference") or device != "cpu" or resources:
            raise TargetError(f"{where}: reference applies to local {_capable('supports_reference')} cpu targets only")
        from search_space import resolve_arch

        try:
            reference = resolve_arch(reference).to_string()
        except ShufflenasError as exc:
            raise TargetError(f"{where}: reference is not an architecture: {exc}") from None
    if kind == "estimate":
        if calibration is None:
            raise TargetError(f"{where}: an estimate-only target needs a calibration name")
        if "estimate" not in description.lower():
            description = f"ESTIMATE ONLY: {description}"
    return Target(name=name, description=description, kind=kind, backend=backend, device=device,
                  providers=tuple(providers), threads=integer("threads", 1, 1), batch=integer("batch", 1, 1),
                  input_size=integer("input_size", 224, 8), resources=dict(resources), calibration=calibration,
                  reference=reference, niced=choice("niced", ("warn", "refuse"), "warn"))


def _read_tables(path: Path) -> dict[str, dict[str, Any]]:
    data = read_toml(path, kind="targets", error=TargetError)
    extra = sorted(set(data) - {"targets"})
    if extra:
        raise TargetError(f"targets file {path}: unknown top-level key(s) {', '.join(extra)} "
                          "(define targets as [targets.NAME] tables)")
    tables = data.get("targets", {})
    if not isinstance(tables, dict):
        raise TargetError(f"targets file {path}: 'targets' must be a table of [targets.NAME] tables")
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise TargetError(f"targets file {path}: targets.{name} must be a table")
    return tables


def load_targets(path: str | Path | None = None) -> dict[str, Target]:
    """Built-in targets, then ``$SHUFFLENAS_TARGETS``, then ``path``: later files add or override keys."""
    tables: dict[str, dict[str, Any]] = {}
    origins: dict[str, str] = {}
    files = [BUILTIN_FILE]
    if os.environ.get(ENV_VAR):
        files.append(Path(os.environ[ENV_VAR]))
    if path is not None:
        files.append(Path(path))
    for file in files:
        for name, table in _read_tables(file).items():
            tables[name] = {**tables.get(name, {}), **table}
            origins[name] = str(file)
    return {name: _check(name, table, origins[name]) for name, table in tables.items()}


def get_target(name: str | Target, path: str | Path | None = None) -> Target:
    """The target called ``name`` (a :class:`Target` passes through unchanged)."""
    if isinstance(name, Target):
        return name
    targets = load_targets(path)
    if name not in targets:
        raise UnknownTargetError(f"unknown target {name!r} (known: {', '.join(sorted(targets))})")
    return targets[name]
