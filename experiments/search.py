"""The search driver: an Optuna study over the ShuffleNetV2 space, run with ask/tell.

One pass of the loop asks up to ``workers`` trials, costs each architecture analytically, gets its
latency on every target (measured where the target can be measured, else its calibrated estimate),
submits its proxy training to the evaluator and tells every result as soon as it arrives. The
study reaches ``trials`` *finished* trials: COMPLETE ones plus FAILED ones with a reason from the
candidate itself (build error, NaN loss, worker death, timeout). Trials failed because their
driver was killed, or for a reason outside the candidate (``experiments.failures``), are re-queued
and do not count.

Everything that can be checked without the study is checked first (config values, targets and how
to reach them, the estimator, the training device, the data set and whether the proxy options fit
it): a failing check is one line, and no storage, lock file or output folder has been created.
Ray and the evaluator start only after that, when the first training is submitted.

Latency measurement and training share this machine's cores, so with ``latency.isolate`` (the
default) local measurements run only while no local training is in flight: the driver works in
rounds (ask ``workers`` trials, measure them, train them, tell them). Measurements are cached per
architecture and target, so a resumed study or a repeated architecture costs nothing. Remote
targets (a Ray resource label) are measured on their board while the training runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from experiments.config import DEFAULT_TARGETS, SEED_LIMIT, ConfigError, SearchConfig
from experiments.failures import ENVIRONMENT_FAILURE_LIMIT, FAILURE_KIND_ATTR, failure_kind
from experiments.objectives import Budget, Objective, latency_key, parse_budgets, parse_objectives
from experiments.progress import SearchProgress
from experiments.storage import (FAIL_REASON_ATTR, OWNER_ATTR, REQUEUED_ATTR, StorageError, check_writer_free,
                                 open_storage, owner_alive, owner_token, recover_stale_trials, writer_lock)
from search_space import DEFAULT_SPACE, Architecture, SearchSpace, get_preset, preset_name
from search_space.errors import ShufflenasError
from search_space.sizes import available_memory, format_bytes

if TYPE_CHECKING:
    import optuna

    from latency_models.measurement.targets import Target

STUDY_FORMAT = 1
EVAL_POLL_S = 0.5


class SearchError(ShufflenasError):
    """The search cannot start (incompatible study, unreachable Ray cluster, unusable target)."""


class EnvironmentStopError(SearchError):
    """Trials keep failing for a reason outside the candidates: the search stops (resumable)."""


def _trace(event: str, number: int) -> None:
    """``trace: EVENT TRIAL`` on stderr when ``SHUFFLENAS_TRACE`` is set, so crash tests can kill the
    driver in a known phase (measure, train, told)."""
    if os.environ.get("SHUFFLENAS_TRACE"):
        os.write(2, f"trace: {event} {number}\n".encode())


# -- results ----------------------------------------------------------------------------------------
@dataclasses.dataclass
class SearchResult:
    """What a search run did; ``front`` holds the non-dominated feasible trials as flat rows."""

    study: str
    storage: str
    trials: int
    finished: int
    complete: int
    failed: int
    new_trials: int
    wall_s: float
    objectives: list[str]
    targets: list[str]
    front: list[dict[str, Any]]
    notes: list[str]
    overhead_s: float = 0.0   # ask + tell + bookkeeping + storage writes of this run (no training, no latency)
    #: COMPLETE trials over a budget (kept off the front): {"trial", "preset", "violations": [text]}
    infeasible: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def headline(self) -> str:
        """``N/T finished``, or what happened when the study already held the target."""
        if self.new_trials == 0 and self.finished >= self.trials:
            return f"{self.finished} finished (target {self.trials} reached; nothing to do)"
        if self.finished > self.trials:
            return f"{self.finished} finished (target {self.trials})"
        return f"{self.finished}/{self.trials} finished"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- helpers ----------------------------------------------------------------------------------------
def make_sampler(name: str, seed: int | None, trials: int, n_objectives: int) -> optuna.samplers.BaseSampler:
    """The configured sampler; small budgets get a short random start-up so the model gets used."""
    import optuna

    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, trials // 4)))
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=max(4, min(10, trials // 3)))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(4, min(10, trials // 3)),
                                      multivariate=True, constant_liar=True)


def proxy_key(config: SearchConfig) -> str:
    """Identifies the proxy-training setup: equal keys mean an accuracy can be reused."""
    p = config.proxy
    root = os.path.abspath(p.data_root) if p.data_root else p.data_root  # the same folder from any cwd
    setup: dict[str, Any] = {"dataset": p.dataset, "root": root, "input": p.input_size, "epochs": p.epochs,
                             "extra": dict(p.extra), "seed": config.seed}
    if p.limit is not None:  # (absent otherwise, so earlier keys stay valid)
        setup["limit"] = p.limit
    text = json.dumps(setup, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # pragma: no cover
        return False


def resolve_targets(config: SearchConfig, notes: list[str]) -> dict[str, Target]:
    """The targets to record, with the deploy input applied; explicit names must be usable."""
    from latency_models.measurement.targets import get_target, load_targets

    known = load_targets(config.targets_file)
    explicit = config.targets is not None
    names = list(config.targets) if explicit else list(DEFAULT_TARGETS) + (["local-cuda"] if _cuda_available() else [])
    targets: dict[str, Target] = {}
    for name in names:
        target = get_target(name, config.targets_file) if name not in known else known[name]
        reason = target.unavailable_reason()
        if reason is None and target.is_estimate:
            reason = _estimator_missing(target, config.latency.estimate_model)
        if reason is not None:
            if explicit:
                raise SearchError(f"target {name!r} cannot be used here: {reason}")
            notes.append(f"skipped target {name}: {reason}")
            continue
        targets[name] = dataclasses.replace(target, input_size=config.deploy_input)
    if not targets:
        raise SearchError("no usable latency target")
    return targets


def _estimator_missing(target: Target, model: str) -> str | None:
    from latency_models.estimation.estimators import get_estimator

    try:
        get_estimator(target, model)
    except ShufflenasError as exc:
        return str(exc)
    return None


def check_ray_address(address: str, timeout: float = 3.0) -> None:
    """The project's one Ray probe (``evaluator.ray_evaluator``): fails in seconds, in one line."""
    from evaluator.ray_evaluator import check_ray_address as probe

    probe(address, timeout=timeout)


def _ray_running() -> bool:
    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


def largest_candidate(space: SearchSpace) -> Architecture:
    """The space's biggest architecture (widest, deepest): what a memory check must fit."""
    widths = tuple(space._widths(i)[-1] for i in range(len(space.width_ranges)))
    depths = tuple(high for _, high in space.depth_ranges)
    ratio = min(space.split_ratios, key=lambda r: abs(r - 0.5))
    return Architecture(widths=widths, depths=depths, split_ratios=(ratio,) * len(widths), stem=max(space.stem_choices),
                        conv5=max(space.conv5_choices), kernels=(max(space.kernel_choices),) * len(widths),
                        se=any(space.se_choices), extra_dw=any(space.extra_dw_choices))


def _dataset_key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


#: Images per data set before ``limit`` (for the memory check made before loading).
DATASET_IMAGES = {"digits": 1797, "cifar10": 60000, "cifar100": 60000, "fashionmnist": 70000, "mnist": 70000,
                  "kmnist": 70000}


def _estimate(arch: Architecture, target: Target, model: str) -> Any:
    """An estimate that never measures (when the estimators support saying so)."""
    from latency_models.estimation import estimators

    return estimators.estimate(arch, target, model, allow_measure=False)


def _set_metric_names(study: optuna.Study, names: list[str]) -> None:
    import warnings

    with warnings.catch_warnings():  # "experimental" since Optuna 3.2; the names are what we want stored
        warnings.simplefilter("ignore")
        study.set_metric_names(names)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _plain(value: Any) -> Any:
    """A JSON-storable version of a value (Optuna user attrs must serialise)."""
    if hasattr(value, "item") and not isinstance(value, (list, tuple, dict)):
        try:
            return value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def result_attrs(result: Any) -> dict[str, Any]:
    """User attrs from an evaluator's ProxyResult: accuracy, train time, images/s, curves."""
    if result is None:
        return {}
    data = result.to_dict() if hasattr(result, "to_dict") else dict(result)
    renamed = {"val_curve": "curve", "status": "proxy_status", "reason": "proxy_reason"}
    return {renamed.get(k, k): _plain(v) for k, v in data.items() if k not in ("arch", "arch_id")}


# -- the driver -------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Pending:
    trial: optuna.trial.Trial
    arch: Architecture
    attrs: dict[str, Any]
    remote: dict[str, Any]          # target name -> ray ObjectRef
    submitted: float = 0.0
    reused: bool = False            # the proxy result comes from an earlier trial (no training)
    failure_kind: str | None = None  # set when the failure was classified from its exception


#: User attrs an earlier trial does not hand on: its own bookkeeping and its latency (taken again:
#: the cache makes it free, and another study may have other targets or deploy settings).
_NOT_REUSED = ("owner", "preset", "requeued", "latency", "reused", FAIL_REASON_ATTR, FAILURE_KIND_ATTR, "proxy_key")
_NOT_REUSED_SAME_LATENCY = tuple(k for k in _NOT_REUSED if k != "latency")


class SearchDriver:
    """Runs one configured search to its trial count; see the module docstring.

    ``evaluator`` lets a caller pass a ready evaluator (tests pass one bound to their Ray session);
    otherwise one is made from the config and closed at the end.
    """

    def __init__(self, config: SearchConfig, *, evaluator: Any = None, echo: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.notes: list[str] = []
        self._evaluator = evaluator
        self._own_evaluator = evaluator is None
        self._echo = echo
        self.owner = owner_token()
        self.overhead_s = 0.0   # ask + tell + bookkeeping + storage writes (no training, no latency)

    # -- setup --------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Every check that needs no storage; nothing is written (see the module docstring)."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        c = self.config
        check_writer_free(c.storage_url)  # a second writer is told now, before the slow checks
        self.space = SearchSpace.from_dict(c.space) if c.space else DEFAULT_SPACE
        self._check_estimate_model()
        self.targets = resolve_targets(c, self.notes)
        self.objectives: list[Objective] = parse_objectives(c.objectives, self.targets)
        self.budgets: list[Budget] = parse_budgets(c.budgets, self.targets)
        self.proxy_key = proxy_key(c)
        self.proxy_config = self._proxy_config()
        self._check_ray()
        self._check_device()
        self._data = self._load_data()

    def _setup(self) -> None:
        """Open (or create) the storage and the study: only after :meth:`prepare` passed."""
        self.storage = open_storage(self.config.storage_url, create=True)
        self.study = self._open_study()
        self._other_results = self._results_of_other_studies()

    def _check_estimate_model(self) -> None:
        from latency_models.estimation.estimators import ESTIMATORS

        model = self.config.latency.estimate_model
        if model != "auto" and model not in ESTIMATORS:
            raise ConfigError(f"unknown latency.estimate_model {model!r} (known: auto, {', '.join(ESTIMATORS)})")

    def _check_ray(self) -> None:
        """Remote targets need a cluster to reach; a given address must answer (a probe of seconds)."""
        c = self.config
        address = c.ray_address or os.environ.get("RAY_ADDRESS") or None
        remote = {n: t for n, t in self.targets.items() if t.is_remote}
        if remote and not address and not _ray_running():
            name, target = next(iter(remote.items()))
            label = ", ".join(f"{k}: {v:g}" for k, v in target.resources.items())
            raise SearchError(f"target {name!r} is measured on a Ray cluster node that advertises {{{label}}}: "
                              "start the search with --ray-address HEAD:6379 (or set RAY_ADDRESS) so it can "
                              "reach the board, or leave the target out")
        if address and self._wants_ray() and not _ray_running():
            check_ray_address(address)

    def _check_device(self) -> None:
        """A CUDA training device must exist here (a cluster's GPUs cannot be checked from here)."""
        device = str(self.proxy_config.device)
        if not device.startswith("cuda") or self.config.ray_address:
            return
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.split(":", 1)[1]) if ":" in device and device.split(":", 1)[1].isdigit() else 0
        if count == 0:
            raise SearchError(f"proxy.device = {device!r}, but this machine has no usable CUDA device "
                              f"(torch {torch.__version__}); use device = \"cpu\"")
        if index >= count:
            raise SearchError(f"proxy.device = {device!r}, but this machine has {count} CUDA device(s) "
                              f"(cuda:0..cuda:{count - 1})")

    def _check_fits_before_loading(self) -> None:
        """The resized data set must fit into memory (load_dataset would otherwise exhaust it)."""
        p = self.config.proxy
        key = _dataset_key(p.dataset)
        images = p.limit or DATASET_IMAGES.get(key)
        available = available_memory()
        if images is None or available is None:
            return
        need = images * 3 * p.input_size ** 2 * 4 * 2  # float32 tensors, plus the resize copy
        if need > available:
            raise SearchError(f"proxy.input_size = {p.input_size} needs about {format_bytes(need)} of memory for the "
                              f"{p.dataset} images ({images} at {p.input_size}x{p.input_size}), more than the "
                              f"{format_bytes(available)} available; lower proxy.input_size or set proxy.limit")

    def _check_training_fits(self, data: Any) -> None:
        """One training step of the space's largest candidate must fit into memory."""
        try:
            from latency_models.costs.memory import require_fits
        except ImportError:  # pragma: no cover - older latency_models
            return
        arch = largest_candidate(self.space)
        require_fits(arch, input_size=data.input_size, num_classes=data.num_classes, batch=self.proxy_config.batch_size,
                     training=True, what="train the space's largest candidate (proxy options)")

    def _load_data(self) -> Any:
        """The proxy data set, loaded now (it is quick) so a bad one fails before the study is touched."""
        from evaluator.datasets import load_dataset

        c = self.config
        if not self._own_evaluator:  # the caller's evaluator holds its data
            data = getattr(self._evaluator, "data", None)
            if data is not None:
                self.proxy_config.check(data)
            return data
        self._check_fits_before_loading()
        try:
            data = load_dataset(c.proxy.dataset, c.proxy.data_root, c.proxy.input_size,
                                c.seed if c.seed is not None else 0, limit=c.proxy.limit)
        except MemoryError:
            raise SearchError(f"the {c.proxy.dataset} data set at {c.proxy.input_size}x{c.proxy.input_size} "
                              "does not fit into memory; lower proxy.input_size or set proxy.limit") from None
        self.proxy_config.check(data)
        self._check_training_fits(data)
        return data

    def _proxy_config(self) -> Any:
        """``evaluator.proxy.ProxyConfig`` built from the ``[proxy]`` table; unknown keys named."""
        from evaluator.proxy import ProxyConfig

        fields = {f.name for f in dataclasses.fields(ProxyConfig)}
        values: dict[str, Any] = dict(self.config.proxy.extra)
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ConfigError(f"unknown option(s) {', '.join('proxy.' + k for k in unknown)} "
                              f"(known: dataset, data_root, input_size, limit, {', '.join(sorted(fields))})")
        for key, value in (("epochs", self.config.proxy.epochs), ("input_size", self.config.proxy.input_size),
                           ("seed", self.config.seed if self.config.seed is not None else 0)):
            if key in fields:
                values.setdefault(key, value)
        try:
            return ProxyConfig(**values)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"bad [proxy] options: {exc}") from None

    def _wants_ray(self) -> bool:
        c = self.config
        return c.evaluator == "ray" or (c.evaluator == "auto" and c.workers > 1) or any(
            t.is_remote for t in self.targets.values())

    def _open_study(self) -> optuna.Study:
        import optuna

        c = self.config
        names = [o.name for o in self.objectives]
        try:
            existing = {s.study_name: s for s in self.storage.get_all_studies()}
        except Exception as exc:
            raise StorageError(f"cannot read storage {c.storage_url}: {' '.join(str(exc).split())[:200]}") from None
        n_existing = (self.storage.get_n_trials(self.storage.get_study_id_from_name(c.study))
                      if c.study in existing else 0)
        # a resumed run does not replay the first draws; the sum wraps so it stays a valid numpy seed
        seed = None if c.seed is None else (c.seed + n_existing) % SEED_LIMIT
        sampler = make_sampler(c.sampler, seed, c.trials, len(self.objectives))
        if c.study in existing:
            study = optuna.load_study(study_name=c.study, storage=self.storage, sampler=sampler)
            stored = study.user_attrs.get("objectives")
            if stored is not None and list(stored) != names:
                raise SearchError(f"study {c.study!r} was created with objectives {stored}, not {names}; "
                                  "use another --study name")
            stored_space = (study.user_attrs.get("config") or {}).get("space", _plain(c.space))
            if stored_space != _plain(c.space):  # Optuna cannot mix parameter distributions in one study
                raise SearchError(f"study {c.study!r} was created with another search space ([space] table); "
                                  "use the same config to resume it, or another --study name")
            if not study.metric_names:  # a study from before metric names were stored
                _set_metric_names(study, names)
            return study
        try:
            study = optuna.create_study(study_name=c.study, storage=self.storage, sampler=sampler,
                                        directions=[o.direction for o in self.objectives])
        except optuna.exceptions.DuplicatedStudyError:  # another driver created it a moment ago
            return self._open_study()
        _set_metric_names(study, names)  # optuna-dashboard and study.metric_names show them
        study.set_user_attr("creator", self.owner)  # it seeds the presets (see _seed_queue)
        study.set_user_attr("format", STUDY_FORMAT)
        study.set_user_attr("objectives", names)
        study.set_user_attr("objective_keys", [o.key for o in self.objectives])
        study.set_user_attr("budgets", {b.name: b.limit for b in self.budgets})
        study.set_user_attr("targets", {n: t.to_dict() for n, t in self.targets.items()})
        study.set_user_attr("deploy_input", c.deploy_input)
        study.set_user_attr("deploy_classes", c.deploy_classes)
        study.set_user_attr("proxy_key", self.proxy_key)
        study.set_user_attr("config", _plain(c.to_dict()))
        return study

    def _seed_queue(self) -> None:
        """Re-queue trials of dead drivers, then the paper presets (once per study)."""
        recovered = recover_stale_trials(self.study, self.config.stale_after_s)
        for params in recovered:
            self.study.enqueue_trial(params, user_attrs={"requeued_from_stale": True})
        if recovered:
            self.notes.append(f"re-queued {len(recovered)} trial(s) left running by a stopped driver")
        if self.study.user_attrs.get("presets_enqueued"):
            return
        creator = self.study.user_attrs.get("creator")
        if creator not in (None, self.owner) and owner_alive(creator, time.time(), self.config.stale_after_s):
            return  # the driver that created the study seeds them (two drivers starting together: once)
        for name in self.config.presets:
            arch = get_preset(name)
            problems = self.space.violations(arch)
            if problems:
                self.notes.append(f"preset {name} lies outside the search space, skipped ({problems[0]})")
                continue
            self.study.enqueue_trial(self.space.params_of(arch), user_attrs={"preset": name})
        self.study.set_user_attr("presets_enqueued", True)

    # -- counting -----------------------------------------------------------------------------
    def _counts(self) -> tuple[int, int, int, int]:
        """(finished, complete, counted failures, running) for this study, from storage."""
        from optuna.trial import TrialState

        complete = failed = running = 0
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING)):
            if t.state == TrialState.COMPLETE:
                complete += 1
            elif t.state == TrialState.RUNNING:
                running += 1
            elif not t.user_attrs.get(REQUEUED_ATTR) and t.user_attrs.get(FAILURE_KIND_ATTR) != "environment":
                failed += 1
        return complete + failed, complete, failed, running

    def _target_total(self) -> int:
        if self.config.presets_only:
            return min(self.config.trials, sum(self.space.contains(get_preset(n)) for n in self.config.presets))
        return self.config.trials

    # -- one trial ----------------------------------------------------------------------------
    def _ask(self) -> tuple[optuna.trial.Trial, Architecture | None, dict[str, Any]]:
        from latency_models.costs.analytic import summary

        trial = self.study.ask()
        attrs: dict[str, Any] = {OWNER_ATTR: self.owner, "proxy_key": self.proxy_key}
        trial.set_user_attr(OWNER_ATTR, self.owner)
        try:
            arch = self.space.suggest(trial)
        except ShufflenasError as exc:
            attrs[FAIL_REASON_ATTR] = f"invalid architecture: {exc}"
            return trial, None, attrs
        attrs.update({"arch": arch.to_string(), "arch_id": arch.arch_id})
        name = preset_name(arch)
        if name:
            attrs["preset"] = name
        costs = summary(arch, self.config.deploy_input, self.config.deploy_classes)
        attrs.update({k: int(v) for k, v in costs.items()})
        return trial, arch, attrs

    def _reusable(self, arch: Architecture) -> tuple[str, Any, bool] | None:
        """(study name, trial, same latency setup) of an earlier COMPLETE trial of the same
        architecture and proxy setup: this study first, then the other studies of the same storage."""
        if not self.config.reuse_results:
            return None
        from optuna.trial import TrialState

        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.user_attrs.get("arch_id") == arch.arch_id and t.user_attrs.get("proxy_key") == self.proxy_key:
                return self.config.study, t, True
        return self._other_results.get(arch.arch_id)

    def _results_of_other_studies(self) -> dict[str, tuple[str, Any, bool]]:
        """arch id -> (study, trial, same latency setup) of COMPLETE trials with this proxy setup in the
        storage's other studies. Latency is copied too only when that study recorded the same targets
        with the same deploy input and classes."""
        if not self.config.reuse_results:
            return {}
        from optuna.trial import TrialState

        ours = {"deploy_input": self.config.deploy_input, "deploy_classes": self.config.deploy_classes,
                "targets": json.loads(json.dumps({n: t.to_dict() for n, t in self.targets.items()}))}
        found: dict[str, tuple[str, Any, bool]] = {}
        for summary in self.storage.get_all_studies():
            if summary.study_name == self.config.study:
                continue
            attrs = summary.user_attrs
            stored_targets = attrs.get("targets") or {}
            same = (attrs.get("deploy_input") == ours["deploy_input"]
                    and attrs.get("deploy_classes") == ours["deploy_classes"]
                    and all(stored_targets.get(n) == d for n, d in ours["targets"].items()))
            for t in self.storage.get_all_trials(summary._study_id, deepcopy=False, states=(TrialState.COMPLETE,)):
                arch_id = t.user_attrs.get("arch_id")
                if arch_id and t.user_attrs.get("proxy_key") == self.proxy_key and "accuracy" in t.user_attrs:
                    found.setdefault(arch_id, (summary.study_name, t, same))
        return found

    def _local_latency(self, arch: Architecture, attrs: dict[str, Any]) -> None:
        """Measure local targets and estimate estimate-only ones (raises on a failed measurement)."""
        for name, target in self.targets.items():
            if target.is_estimate:
                est = _estimate(arch, target, self.config.latency.estimate_model)
                attrs[latency_key(name)] = float(est.median_ms)
                attrs[f"latency_source:{name}"] = f"estimate:{est.model}"
                continue
            if self.config.latency.record_estimates and target.calibration:
                try:  # never measures: an estimate that would need a measurement is not recorded
                    est = _estimate(arch, target, self.config.latency.estimate_model)
                    attrs[f"latency_estimate_ms:{name}"] = float(est.median_ms)
                    attrs[f"latency_estimate_model:{name}"] = est.model
                except ShufflenasError:
                    pass  # no calibration for this target yet: the measurement is what counts
            if target.is_remote:
                continue
            self._record_measurement(name, self._measure(arch, target), attrs)

    def _measure(self, arch: Architecture, target: Target) -> Any:
        from latency_models.measurement.measure import measure

        return measure(arch, target, budget_s=self.config.latency.measure_budget_s,
                       num_classes=self.config.deploy_classes)

    def _all_cached(self, batch: list[_Pending]) -> bool:
        """Whether every local measurement of ``batch`` is already in the measurement cache."""
        from latency_models.measurement.measure import lookup

        local = [t for t in self.targets.values() if not t.is_estimate and not t.is_remote]
        if self.config.deploy_classes != 1000:
            return not local
        return all(lookup(item.arch, t) is not None for item in batch for t in local)

    @staticmethod
    def _record_measurement(name: str, m: Any, attrs: dict[str, Any]) -> None:
        data = m.to_dict() if hasattr(m, "to_dict") else dict(m)
        attrs[latency_key(name)] = float(data["median_ms"])
        attrs[f"latency_source:{name}"] = "measured"
        for field in ("p90_ms", "cv", "runs", "cached"):
            if field in data:
                attrs[f"latency_{field}:{name}"] = _plain(data[field])

    def _submit_remote(self, arch: Architecture) -> dict[str, Any]:
        remote = {name: t for name, t in self.targets.items() if t.is_remote}
        if not remote:
            return {}
        from evaluator.remote_latency import submit_measurement

        budget = self.config.latency.measure_budget_s
        return {name: submit_measurement(arch, t, budget_s=budget) for name, t in remote.items()}

    def _finish(self, pending: _Pending, outcome: Any) -> bool:
        """Tell one trial; returns True when it completed (False: failed with a reason)."""
        from optuna.trial import TrialState

        attrs = pending.attrs
        reason = attrs.get(FAIL_REASON_ATTR)
        if reason is None and outcome is not None:
            if not outcome.ok:
                reason = f"training failed: {outcome.error or 'unknown error'}"
            else:
                attrs.update(result_attrs(outcome.result))
                attrs["attempts"] = getattr(outcome, "attempts", 1)
                attrs["worker_pid"] = getattr(outcome, "worker_pid", None)
                if not _finite(attrs.get("accuracy")):
                    reason = f"training gave no finite accuracy ({attrs.get('accuracy')!r})"
        if reason is None and pending.remote:
            import ray

            from evaluator.remote_latency import collect

            for name, ref in pending.remote.items():
                try:
                    self._record_measurement(name, collect(ray.get(ref), pending.arch, self.targets[name]), attrs)
                except Exception as exc:  # the board died or the measurement raised
                    reason = f"latency on {name} failed: {' '.join(str(exc).split())[:300]}"
                    break
        values = None
        if reason is None:
            values = [attrs.get(o.key) for o in self.objectives]
            missing = [o.name for o, v in zip(self.objectives, values) if not _finite(v)]
            if missing:
                reason = f"no finite value for objective(s) {', '.join(missing)}"
        started = time.perf_counter()
        trial = pending.trial
        for key, value in attrs.items():
            if key != OWNER_ATTR:
                trial.set_user_attr(key, _plain(value))
        if reason is not None:
            kind = pending.failure_kind or failure_kind(reason)
            trial.set_user_attr(FAIL_REASON_ATTR, reason[:1000])
            trial.set_user_attr(FAILURE_KIND_ATTR, kind)
            self.study.tell(trial, state=TrialState.FAIL)
            _trace("told", trial.number)
            self.overhead_s += time.perf_counter() - started
            if kind == "environment":
                self._environment_failure(pending, reason)
            else:
                self._environment_failures = 0
                self._log(f"trial {trial.number} failed: {reason[:200]}")
            return False
        self._environment_failures = 0
        for budget in self.budgets:
            trial.set_constraint(budget.constraint_key, budget.violation(attrs[budget.key]))
        self.study.tell(trial, values)
        _trace("told", trial.number)
        self.overhead_s += time.perf_counter() - started
        self._log(self._describe(trial.number, attrs))
        return True

    def _environment_failure(self, pending: _Pending, reason: str) -> None:
        """Queue the parameters again (a preset keeps its place); stop when it keeps happening."""
        trial = pending.trial
        user_attrs: dict[str, Any] = {"requeued_from": trial.number}
        if pending.attrs.get("preset"):
            user_attrs["preset"] = pending.attrs["preset"]
        if trial.params:
            self.study.enqueue_trial(dict(trial.params), user_attrs=user_attrs)
        self._environment_failures += 1
        self._log(f"trial {trial.number} failed outside the candidate, re-queued: {reason[:200]}")
        if self._environment_failures >= ENVIRONMENT_FAILURE_LIMIT:
            raise EnvironmentStopError(f"stopped: {self._environment_failures} trials in a row failed for a reason outside "
                              f"the candidate (last: {' '.join(reason.split())[:300]}); their parameters are "
                              "queued again: fix the cause and run the same command to resume")

    def _describe(self, number: int, attrs: Mapping[str, Any]) -> str:
        parts = [f"trial {number}"]
        if attrs.get("preset"):
            parts.append(f"[{attrs['preset']}]")
        if _finite(attrs.get("accuracy")):
            parts.append(f"acc {attrs['accuracy']:.3f}")
        for name in self.targets:
            value = attrs.get(latency_key(name))
            if _finite(value):
                parts.append(f"{name} {value:.2f} ms")
        if "mac" in attrs:
            parts.append(f"MAC {attrs['mac'] / 1e6:.1f}M")
        if attrs.get("reused_from") is not None:
            where = attrs.get("reused_from_study")
            other = f" of study {where}" if where and where != self.config.study else ""
            parts.append(f"(reused trial {attrs['reused_from']}{other})")
        parts += [f"INFEASIBLE {text}" for text in self._violations(attrs)]
        return " ".join(parts)

    def _violations(self, attrs: Mapping[str, Any]) -> list[str]:
        """``latency:local-cpu 15.27 > 3.0 ms`` for every budget the trial exceeds."""
        out = []
        for budget in self.budgets:
            value = attrs.get(budget.key)
            if _finite(value) and budget.violation(value) > 0:
                if budget.name.startswith("latency:"):
                    out.append(f"{budget.name} {value:.2f} > {budget.limit:g} ms")
                else:
                    out.append(f"{budget.name} {value:.4g} > {budget.limit:g}")
        return out

    def _log(self, message: str) -> None:
        if self._progress is not None:
            self._progress.log(message)
        if self._echo is not None:
            self._echo(message)

    # -- evaluator ----------------------------------------------------------------------------
    def _get_evaluator(self) -> Any:
        """The evaluator (Ray starts here, at the first training: after every check passed)."""
        if self._evaluator is None:
            c = self.config
            data = self._data
            kind = c.evaluator if c.evaluator != "auto" else ("ray" if c.workers > 1 else "sequential")
            options: dict[str, Any] = {}
            if kind == "ray":
                options["max_in_flight"] = c.workers
                if c.ray_address:
                    options["address"] = c.ray_address
                if c.trial_timeout_s is not None:
                    options["timeout_s"] = c.trial_timeout_s
            elif c.trial_timeout_s is not None:
                self.notes.append("trial_timeout_s applies to the ray evaluator only")
            self._evaluator = _make_evaluator(kind, data, options)
        return self._evaluator

    # -- main loop ----------------------------------------------------------------------------
    def run(self) -> SearchResult:
        self.prepare()  # nothing is written until every check passed
        with writer_lock(self.config.storage_url):  # SQLite: one search process per file
            return self._run()

    def _run(self) -> SearchResult:
        start = time.perf_counter()
        self._progress: SearchProgress | None = None
        self._environment_failures = 0
        self._setup()
        self._seed_queue()
        total = self._target_total()
        finished, *_ = self._counts()
        new_trials = 0
        pending: dict[str, _Pending] = {}
        self._progress = SearchProgress(total, min(finished, total), title=self.config.study,
                                        enabled=self.config.progress)
        for note in self.notes:
            self._progress.log(f"note: {note}")
        # isolated local measurements: work in rounds (ask `workers`, measure them, train them all)
        rounds = self.config.latency.isolate and any(not t.is_estimate and not t.is_remote
                                                     for t in self.targets.values())
        try:
            with self._progress:
                self._progress.update(min(finished, total), self._front_size())
                while True:
                    t0 = time.perf_counter()
                    finished, _, _, running = self._counts()
                    self.overhead_s += time.perf_counter() - t0
                    want = total - finished - running
                    room = self.config.workers - len(pending)
                    if want > 0 and room > 0 and not (rounds and pending):
                        new_trials += self._start_round(min(want, room), pending)
                        continue
                    if not pending:
                        break
                    self._collect(pending, block=True)
        except EnvironmentStopError:
            self._requeue_pending(pending)
            raise
        finally:
            # a trial still pending here (Ctrl-C, crash) stays RUNNING with our owner token: the
            # next driver on this host sees the process gone and re-queues it
            if self._own_evaluator and self._evaluator is not None:
                try:
                    self._evaluator.close()
                except Exception:
                    pass
        return self._result(total, new_trials, time.perf_counter() - start)

    def _requeue_pending(self, pending: dict[str, _Pending]) -> None:
        """Fail and re-queue the trials still in flight when the search stops on its own."""
        from optuna.trial import TrialState

        for item in pending.values():
            item.trial.set_user_attr(FAIL_REASON_ATTR, "interrupted: the search stopped; re-queued")
            item.trial.set_user_attr(REQUEUED_ATTR, True)
            self.study.tell(item.trial, state=TrialState.FAIL)
            if item.trial.params:
                self.study.enqueue_trial(dict(item.trial.params), user_attrs={"requeued_from": item.trial.number})
        pending.clear()

    def _start_round(self, n: int, pending: dict[str, _Pending]) -> int:
        """Ask ``n`` trials; measure them (after draining local trainings when isolating); submit them."""
        batch: list[_Pending] = []
        for _ in range(n):
            t0 = time.perf_counter()
            trial, arch, attrs = self._ask()
            self.overhead_s += time.perf_counter() - t0
            item = _Pending(trial, arch, attrs, {})  # type: ignore[arg-type]
            if arch is None:
                self._finish(item, None)
                continue
            t0 = time.perf_counter()
            earlier = self._reusable(arch)
            self.overhead_s += time.perf_counter() - t0
            if earlier is not None:  # the proxy result is copied; latency too when measured the same way
                study_name, source, same_latency = earlier
                skip = _NOT_REUSED if not same_latency else _NOT_REUSED_SAME_LATENCY
                for key, value in source.user_attrs.items():
                    if key not in attrs and not key.startswith(skip):
                        attrs[key] = value
                attrs["reused_from"] = source.number
                attrs["reused_from_study"] = study_name
                item.reused = True
                if same_latency:
                    self._finish(item, None)
                    self._progress_update()
                    continue
            batch.append(item)
        if not batch:
            return n
        if self.config.latency.isolate and pending and not self._all_cached(batch):
            while pending:  # trainings would share the cores with the measurement
                self._collect(pending, block=True)
        evaluator = None
        for item in batch:
            try:
                item.remote = self._submit_remote(item.arch)
                _trace("measure", item.trial.number)
                self._local_latency(item.arch, item.attrs)
            except ShufflenasError as exc:
                item.attrs[FAIL_REASON_ATTR] = f"latency: {exc}"
                item.failure_kind = failure_kind(exc)
            except Exception as exc:  # export / runtime failure of this candidate
                item.attrs[FAIL_REASON_ATTR] = f"latency: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
                item.failure_kind = failure_kind(exc)
            if FAIL_REASON_ATTR in item.attrs or item.reused:
                self._finish(item, None)
                self._progress_update()
                continue
            from evaluator.base import EvalTask

            evaluator = evaluator or self._get_evaluator()
            key = f"{self.config.study}:{item.trial.number}"
            t0 = time.perf_counter()
            evaluator.submit(EvalTask(key, item.arch, self.proxy_config))
            _trace("train", item.trial.number)
            self.overhead_s += time.perf_counter() - t0
            item.submitted = time.perf_counter()
            pending[key] = item
        return n

    def _collect(self, pending: dict[str, _Pending], block: bool) -> None:
        evaluator = self._get_evaluator()
        outcomes = evaluator.poll(EVAL_POLL_S if block else 0.0)
        for outcome in outcomes:
            item = pending.pop(outcome.key, None)
            if item is None:
                continue
            self._finish(item, outcome)
        if outcomes:
            self._progress_update()

    def _progress_update(self) -> None:
        if self._progress is None:
            return
        t0 = time.perf_counter()
        finished, *_ = self._counts()
        self._progress.update(min(finished, self._target_total()), self._front_size())
        self.overhead_s += time.perf_counter() - t0

    def _front_size(self) -> int:
        from experiments.report import front_numbers

        return len(front_numbers(self.study))

    def _result(self, total: int, new_trials: int, wall_s: float) -> SearchResult:
        from experiments.report import front_rows

        from optuna.trial import TrialState

        finished, complete, failed, _ = self._counts()
        infeasible = []
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            violations = self._violations(t.user_attrs)
            if violations:
                infeasible.append({"trial": t.number, "preset": t.user_attrs.get("preset"), "violations": violations})
        return SearchResult(
            study=self.config.study, storage=self.config.storage_url, trials=total, finished=finished,
            complete=complete, failed=failed, new_trials=new_trials, wall_s=round(wall_s, 2),
            objectives=[o.name for o in self.objectives], targets=list(self.targets),
            front=front_rows(self.study), notes=list(self.notes), overhead_s=round(self.overhead_s, 4),
            infeasible=infeasible,
        )


def _make_evaluator(kind: str, data: Any, options: dict[str, Any]) -> Any:
    from evaluator import make_evaluator

    return make_evaluator(kind, data, **options)


def run_search(config: SearchConfig, *, evaluator: Any = None, echo: Callable[[str], None] | None = None) -> SearchResult:
    """Run (or resume) the search ``config`` describes; see :class:`SearchDriver`."""
    return SearchDriver(config, evaluator=evaluator, echo=echo).run()
