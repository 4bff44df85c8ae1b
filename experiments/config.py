"""Search configuration: embedded defaults, TOML files and command-line overrides, validated in one place.

(Over 350 lines on purpose: every key, its type and its check stay in this one file, so a new key is
added and validated in one place.)

A config is a flat table of options plus a few sub-tables (``[proxy]``, ``[latency]``, ``[budgets]``,
``[space]``, ``[supernet]``) and optional ``[[run]]`` entries (several searches from one file, each a table of
overrides with a ``name``). Every key is checked: an unknown key or a value of the wrong type is a
one-line :class:`ConfigError` that names it, so a typo never silently falls back to a default.

Relative paths written in a config file (``out``, ``targets_file``, ``proxy.data_root``,
``supernet.checkpoint``) are relative
to the file's folder, so a recipe means the same wherever it is run from; command-line values (and
the embedded defaults) are relative to the working directory.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from latency_models import artifacts
from evaluator.registry import EVALUATORS as EVALUATOR_REGISTRY
from experiments.samplers import SAMPLERS as SAMPLER_REGISTRY
from experiments.successive_halving import Fidelity, FidelityError
from search_space.errors import ShufflenasError


class ConfigError(ShufflenasError):
    """A config file or option is missing, malformed, unknown or of the wrong type."""


SAMPLERS = SAMPLER_REGISTRY.names()
EVALUATORS = ("auto", *EVALUATOR_REGISTRY.names())
DEFAULT_PRESETS = ("0.5x", "1.0x", "1.5x", "2.0x")
#: Seeds are numpy / Optuna seeds: 0 <= seed < 2**32.
SEED_LIMIT = 2**32
#: Keys holding a file or folder path; relative values in a config file resolve against its folder.
PATH_KEYS = ("out", "targets_file")
PROXY_PATH_KEYS = ("data_root",)
SUPERNET_PATH_KEYS = ("checkpoint",)
#: Targets searched when the config names none; ``local-cuda`` joins when CUDA is present.
DEFAULT_TARGETS = ("local-cpu", "paper-gpu-1080ti", "paper-arm-sd810")
#: Sections owned by other commands: accepted (and ignored) by the search so one recipe can hold both.
FOREIGN_SECTIONS = ("flops_vs_speed",)


@dataclasses.dataclass(frozen=True)
class ProxyOptions:
    """How candidates are trained for their proxy accuracy (small images, few epochs)."""

    dataset: str = "digits"
    data_root: str | None = None
    input_size: int = 16
    epochs: int = 2
    #: Cap on the images loaded (train + val, stratified); None = all.
    limit: int | None = None
    #: Extra keyword arguments for ``evaluator.proxy.ProxyConfig`` (checked against its fields).
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class SupernetOptions:
    """How a trained supernet scores candidates (``evaluator = "supernet"``): inherited weights,
    BatchNorm recalibrated on ``bn_batches`` training batches, top-1 on the validation split."""

    #: The folder ``shufflenas supernet train --out`` wrote (or its supernet.pt); a list of several:
    #: an ensemble, each candidate scored by the mean of their scores (evaluator.supernet.ensemble).
    checkpoint: str | tuple[str, ...] | None = None
    bn_batches: int = 2
    #: Validation images scored per candidate; 0 or None = the whole validation split.
    val_size: int | None = 500
    #: Torch threads per scoring worker.
    threads: int = 1
    #: Which images a score reads: "supernet" (the split the supernet trained on: calibration from
    #: its training images, validation from the images it held out) or "proxy" (the search's [proxy]
    #: split, which may hold images the supernet trained on).
    data: str = "supernet"


@dataclasses.dataclass(frozen=True)
class FinalistOptions:
    """The ``[finalists]`` table: after the search, the top ``k`` trials of each target's front are
    trained stand-alone (a ``[train]`` recipe) for an accuracy of higher fidelity than the proxy's.
    Unset data keys default to the study's ``[proxy]`` data; ``epochs`` to the recipe's."""

    k: int = 5
    #: Which k: "front" (spread along each target's front) or "front+bands" (those, plus the most accurate
    #: trial of each of k log-latency bands they leave empty): experiments.finalists.
    pick: str = "front"
    epochs: int | None = None
    #: A TOML file with a ``[train]`` table (``experiments/configs/train_fashion.toml``); None: TrainRecipe's defaults.
    recipe: str | None = None
    dataset: str | None = None
    data_root: str | None = None
    limit: int | None = None
    input_size: int | None = None
    #: Trainings at once (Ray tasks when > 1); None: the search's ``workers``.
    workers: int | None = None


@dataclasses.dataclass(frozen=True)
class LatencyOptions:
    """How latency is obtained per target."""

    #: Seconds of timed runs per measured candidate (the measurement cache makes repeats free).
    measure_budget_s: float = 1.0
    #: Estimator for estimate-only targets ("auto" = the best calibrated one).
    estimate_model: str = "auto"
    #: Also record the calibrated estimate for targets that are measured (when a calibration exists).
    record_estimates: bool = True
    #: Measure only while no local training runs (trainings and measurements would share the cores).
    isolate: bool = True


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """Every option of ``shufflenas search``; the defaults are the no-argument demo."""

    study: str = "shufflenas"
    storage: str | None = None          # default: sqlite:///<out>/study.db
    out: str = "runs/search"
    trials: int = 24
    budget_s: float | None = None       # CPU-seconds of proxy training after which no new work starts
    sampler: str = "tpe"
    seed: int | None = 0
    workers: int = 2
    evaluator: str = "auto"             # auto: ray when workers > 1, else sequential; "supernet": [supernet]
    ray_address: str | None = None      # None: start a local Ray instance when the ray evaluator is used
    targets: tuple[str, ...] | None = None   # None: DEFAULT_TARGETS (+ local-cuda when present)
    targets_file: str | None = None
    objectives: tuple[str, ...] = ("accuracy", "latency:local-cpu")
    budgets: Mapping[str, float] = dataclasses.field(default_factory=dict)
    presets: tuple[str, ...] = DEFAULT_PRESETS
    presets_only: bool = False
    deploy_input: int = 224
    deploy_classes: int = 1000
    trial_timeout_s: float | None = None
    reuse_results: bool = True
    stale_after_s: float = 86400.0      # RUNNING trials of drivers on other hosts count as stale after this
    progress: bool = True
    proxy: ProxyOptions = dataclasses.field(default_factory=ProxyOptions)
    latency: LatencyOptions = dataclasses.field(default_factory=LatencyOptions)
    supernet: SupernetOptions = dataclasses.field(default_factory=SupernetOptions)
    #: Multi-objective successive halving over proxy epochs (``[fidelity] rungs = [1, 3, 9]``); off when empty.
    fidelity: Fidelity = dataclasses.field(default_factory=Fidelity)
    space: Mapping[str, Any] | None = None
    name: str | None = None             # the [[run]] entry this config came from
    #: ``[finalists]``: re-score the fronts' top k by stand-alone training after the search; None: off.
    finalists: FinalistOptions | None = None

    @property
    def storage_url(self) -> str:
        """The Optuna storage URL (the default is a SQLite file inside ``out``)."""
        if self.storage:
            return self.storage
        return f"sqlite:///{Path(self.out) / 'study.db'}"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["budgets"] = dict(self.budgets)
        data["proxy"]["extra"] = dict(self.proxy.extra)
        return data


# -- schema -------------------------------------------------------------------------------------
_OPTIONAL = object()

_TOP: dict[str, tuple[str, Any]] = {
    # key: (type name, python types)
    "study": ("string", str),
    "storage": ("string", str),
    "out": ("string", str),
    "trials": ("integer", int),
    "budget_s": ("number", (int, float)),
    "sampler": ("string", str),
    "seed": ("integer", int),
    "workers": ("integer", int),
    "evaluator": ("string", str),
    "ray_address": ("string", str),
    "targets": ("list of strings", list),
    "targets_file": ("string", str),
    "objectives": ("list of strings", list),
    "budgets": ("table of numbers", dict),
    "presets": ("list of strings", list),
    "presets_only": ("boolean", bool),
    "deploy_input": ("integer", int),
    "deploy_classes": ("integer", int),
    "trial_timeout_s": ("number", (int, float)),
    "reuse_results": ("boolean", bool),
    "stale_after_s": ("number", (int, float)),
    "progress": ("boolean", bool),
    "proxy": ("table", dict),
    "latency": ("table", dict),
    "supernet": ("table", dict),
    "fidelity": ("table", dict),
    "space": ("table", dict),
    "name": ("string", str),
    "finalists": ("table", dict),
}
_PROXY: dict[str, tuple[str, Any]] = {
    "dataset": ("string", str),
    "data_root": ("string", str),
    "input_size": ("integer", int),
    "epochs": ("integer", int),
    "limit": ("integer", int),
}
_SUPERNET: dict[str, tuple[str, Any]] = {
    "checkpoint": ("string or list of strings", (str, list)),
    "bn_batches": ("integer", int),
    "val_size": ("integer", int),
    "threads": ("integer", int),
    "data": ("string", str),
}
_FIDELITY: dict[str, tuple[str, Any]] = {
    "rungs": ("list of integers", list),
    "eta": ("integer", int),
    "promotion": ("string", str),
    "bands": ("integer", int),
}
_LATENCY: dict[str, tuple[str, Any]] = {
    "measure_budget_s": ("number", (int, float)),
    "estimate_model": ("string", str),
    "record_estimates": ("boolean", bool),
    "isolate": ("boolean", bool),
}


def _check_type(where: str, value: Any, type_name: str, types: Any) -> None:
    ok = isinstance(value, types) and not (isinstance(value, bool) and types in (int, (int, float)))
    if not ok:
        article = "an" if type_name[0] in "aeiou" else "a"
        raise ConfigError(f"{where} must be {article} {type_name}, got {type(value).__name__} {value!r}")
    listed = type_name in ("list of strings", "string or list of strings") and isinstance(value, list)
    if listed and not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of strings, got {value!r}")
    if type_name == "list of integers" and not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ConfigError(f"{where} must be a list of integers, got {value!r}")


def _check_table(where: str, table: Mapping[str, Any], schema: Mapping[str, tuple[str, Any]],
                 allow_extra: bool = False) -> None:
    unknown = [k for k in table if k not in schema]
    if unknown and not allow_extra:
        known = ", ".join(sorted(schema))
        raise ConfigError(f"unknown option(s) {', '.join(repr(f'{where}{k}') for k in unknown)} (known: {known})")
    for key, value in table.items():
        if key in schema:
            _check_type(f"{where}{key}", value, *schema[key])


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; a missing or malformed file is a one-line ConfigError."""
    path = Path(path)
    return artifacts.read_toml(path, kind="config", error=ConfigError, missing=f"config file not found: {path}")


def _validate_layer(where: str, table: Mapping[str, Any]) -> None:
    _check_table(where, {k: v for k, v in table.items() if k not in FOREIGN_SECTIONS and k != "run"}, _TOP)
    if "proxy" in table:
        # extra [proxy] keys go to evaluator.proxy.ProxyConfig and are checked against it when the search starts
        _check_table(f"{where}proxy.", table["proxy"], _PROXY, allow_extra=True)
    if "latency" in table:
        _check_table(f"{where}latency.", table["latency"], _LATENCY)
    if "supernet" in table:
        _check_table(f"{where}supernet.", table["supernet"], _SUPERNET)
    if "fidelity" in table:
        _check_table(f"{where}fidelity.", table["fidelity"], _FIDELITY)
    if "finalists" in table:
        finalist_options(table["finalists"], f"{where}finalists.")
    for key, value in table.get("budgets", {}).items():
        _check_type(f"{where}budgets.{key}", value, "number", (int, float))


_FINALISTS: dict[str, tuple[str, Any]] = {
    "k": ("integer", int),
    "pick": ("string", str),
    "epochs": ("integer", int),
    "recipe": ("string", str),
    "dataset": ("string", str),
    "data_root": ("string", str),
    "limit": ("integer", int),
    "input_size": ("integer", int),
    "workers": ("integer", int),
}
FINALIST_PATH_KEYS = ("recipe", "data_root")
#: ``[finalists] pick`` values (experiments.finalists.PICKS; spelled here so the config imports nothing of it).
FINALIST_PICKS = ("front", "front+bands")
#: ``[supernet] data``: the supernet's own split, or the search's [proxy] split.
SUPERNET_DATA = ("supernet", "proxy")


def finalist_options(table: Mapping[str, Any], where: str = "finalists.") -> FinalistOptions:
    """A checked :class:`FinalistOptions` from a ``[finalists]`` table (one-line errors naming the key)."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where.rstrip('.')} must be a table ([finalists]), got {table!r}")
    _check_table(where, table, _FINALISTS)
    options = FinalistOptions(**table)
    for name, low, high in (("k", 1, None), ("epochs", 1, None), ("limit", 4, None), ("input_size", 8, 1024),
                            ("workers", 1, None)):
        value = getattr(options, name)
        if value is not None and (value < low or (high is not None and value > high)):
            bound = f">= {low}" if high is None else f"between {low} and {high}"
            raise ConfigError(f"{where}{name} must be {bound}, got {value}")
    for name in ("recipe", "dataset"):
        value = getattr(options, name)
        if value is not None and not value.strip():
            raise ConfigError(f"{where}{name} must not be empty (omit it for the default)")
    if options.pick not in FINALIST_PICKS:
        raise ConfigError(f"{where}pick must be one of {', '.join(FINALIST_PICKS)}, got {options.pick!r}")
    return options


def load_finalist_options(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> FinalistOptions:
    """The ``[finalists]`` table of ``path`` (its relative paths against the file's folder), then
    ``overrides`` (command-line values; ``None`` values are ignored)."""
    table: dict[str, Any] = {}
    if path is not None:
        data = read_toml(path)
        if "finalists" not in data:
            raise ConfigError(f"{path} has no [finalists] table (a [train] recipe goes to --recipe)")
        if not isinstance(data["finalists"], dict):
            raise ConfigError(f"{path}: finalists must be a table ([finalists]), got {data['finalists']!r}")
        table = dict(data["finalists"])
        _resolve_paths({"finalists": table}, Path(path).parent)
    cli = {k: v for k, v in (overrides or {}).items() if v is not None}
    return finalist_options({**table, **cli})


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if key in ("proxy", "latency", "budgets", "supernet", "fidelity") and isinstance(value, Mapping):
            merged[key] = {**merged.get(key, {}), **value}
        elif key == "finalists" and isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _build(table: Mapping[str, Any]) -> SearchConfig:
    values = dict(table)
    proxy_table = dict(values.pop("proxy", {}))
    proxy_known = {k: proxy_table.pop(k) for k in list(proxy_table) if k in _PROXY}
    proxy = ProxyOptions(**proxy_known, extra=proxy_table)
    latency = LatencyOptions(**values.pop("latency", {}))
    supernet_table = dict(values.pop("supernet", {}))
    if isinstance(supernet_table.get("checkpoint"), (list, tuple)):  # one folder listed alone is that supernet
        members = tuple(supernet_table["checkpoint"])
        supernet_table["checkpoint"] = members[0] if len(members) == 1 else members
    supernet = SupernetOptions(**supernet_table)
    fidelity_table = dict(values.pop("fidelity", {}))
    if "rungs" in fidelity_table:
        fidelity_table["rungs"] = tuple(fidelity_table["rungs"])
    fidelity = Fidelity(**fidelity_table)
    if "finalists" in values:
        values["finalists"] = finalist_options(values["finalists"])
    for key in ("targets", "objectives", "presets"):
        if key in values:
            values[key] = tuple(values[key])
    if "budgets" in values:
        values["budgets"] = {k: float(v) for k, v in values["budgets"].items()}
    for key in ("trial_timeout_s", "stale_after_s", "budget_s"):
        if key in values:
            values[key] = float(values[key])
    config = SearchConfig(**values, proxy=proxy, latency=latency, supernet=supernet, fidelity=fidelity)
    _check_values(config)
    return config


def _check_values(config: SearchConfig) -> None:
    """Range and choice checks that do not need the other packages."""
    if config.trials <= 0:
        raise ConfigError(f"trials must be > 0, got {config.trials}")
    if config.workers <= 0:
        raise ConfigError(f"workers must be > 0, got {config.workers}")
    if config.budget_s is not None and not (0 < config.budget_s < math.inf):
        raise ConfigError(f"budget_s must be a finite number of seconds > 0, got {config.budget_s}")
    if config.seed is not None and not 0 <= config.seed < SEED_LIMIT:
        raise ConfigError(f"seed must be between 0 and {SEED_LIMIT - 1}, got {config.seed}")
    if config.proxy.limit is not None and config.proxy.limit < 4:
        raise ConfigError(f"proxy.limit must be >= 4 (or unset), got {config.proxy.limit}")
    if config.sampler not in SAMPLERS:
        raise ConfigError(f"unknown sampler {config.sampler!r} (known: {', '.join(SAMPLERS)})")
    if config.evaluator not in EVALUATORS:
        raise ConfigError(f"unknown evaluator {config.evaluator!r} (known: {', '.join(EVALUATORS)})")
    s = config.supernet
    if config.evaluator == "supernet" and not (s.checkpoint and all(c.strip() for c in _as_tuple(s.checkpoint))):
        raise ConfigError('evaluator = "supernet" needs [supernet] checkpoint = the folder `shufflenas supernet '
                          'train --out DIR` wrote, or a list of such folders (or --supernet DIR)')
    for name, value in (("supernet.bn_batches", s.bn_batches), ("supernet.threads", s.threads)):
        if value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}")
    if s.val_size is not None and s.val_size < 0:
        raise ConfigError(f"supernet.val_size must be >= 0 (0: the whole validation split), got {s.val_size}")
    if s.data not in SUPERNET_DATA:
        raise ConfigError(f"supernet.data must be one of {', '.join(SUPERNET_DATA)}, got {s.data!r}")
    if not config.study.strip():
        raise ConfigError("study name must not be empty")
    if config.storage is not None and not config.storage.strip():
        raise ConfigError("storage must not be empty (omit it for sqlite:///<out>/study.db)")
    for name, value, low in (("deploy_input", config.deploy_input, 8), ("deploy_classes", config.deploy_classes, 1),
                             ("proxy.input_size", config.proxy.input_size, 8), ("proxy.epochs", config.proxy.epochs, 1)):
        if value < low:
            raise ConfigError(f"{name} must be >= {low}, got {value}")
    if not (0 < config.latency.measure_budget_s < math.inf):
        raise ConfigError(f"latency.measure_budget_s must be a finite number > 0, got {config.latency.measure_budget_s}")
    if config.trial_timeout_s is not None and not (0 < config.trial_timeout_s < math.inf):
        raise ConfigError(f"trial_timeout_s must be a finite number > 0, got {config.trial_timeout_s}")
    if not config.stale_after_s > 0:  # inf is fine: never treat other hosts' trials as stale
        raise ConfigError(f"stale_after_s must be > 0, got {config.stale_after_s}")
    for name, limit in config.budgets.items():
        if math.isnan(limit):
            raise ConfigError(f"budgets.{name} must be a number, got nan")
    if not config.objectives:
        raise ConfigError("objectives must not be empty")
    if config.presets_only and not config.presets:
        raise ConfigError("presets_only = true needs at least one preset in 'presets'")
    try:
        config.fidelity.check(config.proxy.epochs)
    except FidelityError as exc:
        raise ConfigError(str(exc)) from None
    if config.fidelity.enabled and config.evaluator == "supernet":
        raise ConfigError("[fidelity] rungs are epochs of proxy training; a supernet scores without training "
                          "(drop [fidelity] or the supernet evaluator)")


def load_configs(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
                 run: str | None = None) -> list[SearchConfig]:
    """The searches a config file describes (one, or one per ``[[run]]``), with ``overrides`` on top.

    ``overrides`` holds command-line values (``None`` values are ignored); they apply to every run.
    ``run`` selects one ``[[run]]`` entry by name.
    """
    table: dict[str, Any] = read_toml(path) if path is not None else {}
    where = ""
    _validate_layer(where, table)
    if path is not None:
        base = Path(path).parent
        _resolve_paths(table, base)
        for entry in table.get("run", []) if isinstance(table.get("run"), list) else []:
            if isinstance(entry, dict):
                _resolve_paths(entry, base)
    for section in FOREIGN_SECTIONS:
        if section in table and not isinstance(table[section], dict):
            raise ConfigError(f"{section} must be a table ([{section}]), got {table[section]!r}")
    if set(table) and set(table) <= set(FOREIGN_SECTIONS):
        raise ConfigError(f"{path} holds no search, only [{', '.join(table)}]: run {_foreign_command(table)}")
    runs = table.pop("run", None)
    for section in FOREIGN_SECTIONS:
        table.pop(section, None)
    cli = {k: v for k, v in (overrides or {}).items() if v is not None}
    stray = [k for k in cli if k == "run" or k in FOREIGN_SECTIONS]
    if stray:
        raise ConfigError(f"{', '.join(repr(k) for k in stray)} can only come from a config file, not an override")
    _validate_layer("", cli)
    if runs is None:
        if run is not None:
            raise ConfigError(f"--run {run!r}: the config has no [[run]] entries")
        return [_build(_merge(table, cli))]
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs) or not runs:
        raise ConfigError("'run' must be a list of tables ([[run]] entries)")
    configs = []
    for i, entry in enumerate(runs):
        _validate_layer(f"run[{i}].", entry)
        if "name" not in entry:
            raise ConfigError(f"run[{i}] needs a 'name'")
        merged = _merge(_merge(table, entry), cli)
        if "study" not in entry and "study" not in cli:
            merged["study"] = f"{merged.get('study', SearchConfig.study)}-{entry['name']}"
        configs.append(_build(merged))
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise ConfigError(f"[[run]] names must be distinct, got {names}")
    if run is not None:
        configs = [c for c in configs if c.name == run]
        if not configs:
            raise ConfigError(f"no [[run]] named {run!r} (known: {', '.join(n or '' for n in names)})")
    return configs


def _as_tuple(value: str | tuple[str, ...]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _resolve_paths(table: dict[str, Any], base: Path) -> None:
    """Make a config file's relative paths relative to its folder (in place; already type-checked)."""
    def resolve(value: Any) -> Any:
        if not isinstance(value, str) or not value.strip():
            return value
        expanded = os.path.expanduser(value)
        return expanded if os.path.isabs(expanded) else os.path.normpath(base / expanded)

    for key in PATH_KEYS:
        if key in table:
            table[key] = resolve(table[key])
    for section, keys in (("proxy", PROXY_PATH_KEYS), ("supernet", SUPERNET_PATH_KEYS),
                          ("finalists", FINALIST_PATH_KEYS)):
        sub = table.get(section)
        if isinstance(sub, dict):
            for key in keys:
                if isinstance(sub.get(key), list):
                    sub[key] = [resolve(v) for v in sub[key]]
                elif key in sub:
                    sub[key] = resolve(sub[key])


def _foreign_command(table: Mapping[str, Any]) -> str:
    """The command that reads a recipe's foreign section (so ``search`` can point to it)."""
    section = table.get("flops_vs_speed", {})
    parts = ["shufflenas study flops-vs-speed"]
    flags = {"samples": "--samples", "seed": "--seed", "out": "--out", "budget_s": "--budget",
             "targets_file": "--targets-file"}
    for key, flag in flags.items():
        if key in section:
            parts.append(f"{flag} {section[key]}")
    targets = section.get("targets", [])
    for target in targets if isinstance(targets, list) else [targets]:
        parts.append(f"--target {target}")
    return " ".join(parts)


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> SearchConfig:
    """Exactly one search (a config with several ``[[run]]`` entries is an error here)."""
    configs = load_configs(path, overrides)
    if len(configs) != 1:
        raise ConfigError(f"{path} describes {len(configs)} runs; pick one with --run")
    return configs[0]
