"""The study a search writes to: open or create it, check it fits the config, seed its queue,
count its trials and find results other trials already paid for.

A resumed study must be the same experiment (same objectives, same ``[space]``: Optuna cannot mix
parameter distributions in one study; accuracies from one scorer: the proxy training, or one
supernet), so an incompatible one is refused with one line. What a
trial stores is :class:`experiments.trial_record.TrialRecord`'s business; this module only reads it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from experiments import trial_record as keys
from experiments.config import SEED_LIMIT, SearchConfig
from experiments.samplers import make_sampler
from experiments.storage import StorageError, owner_alive, parse_storage_url, recover_stale_trials
from experiments.trial_record import Scorer, TrialRecord, counts_toward_target, plain
from search_space import SearchSpace, get_preset
from search_space.errors import ShufflenasError

if TYPE_CHECKING:
    import optuna

    from experiments.objectives import Budget, Objective
    from latency_models.measurement.targets import Target

STUDY_FORMAT = 1


class SearchError(ShufflenasError):
    """The search cannot start (incompatible study, unreachable Ray cluster, unusable target)."""


def proxy_key(config: SearchConfig) -> str:
    """Identifies the proxy-training setup: equal keys mean an accuracy can be reused."""
    p = config.proxy
    root = os.path.abspath(p.data_root) if p.data_root else p.data_root  # the same folder from any cwd
    setup: dict[str, Any] = {"dataset": p.dataset, "root": root, "input": p.input_size, "epochs": p.epochs,
                             "extra": dict(p.extra), "seed": config.seed}
    if p.limit is not None:  # (absent otherwise, so earlier keys stay valid)
        setup["limit"] = p.limit
    if config.fidelity.enabled:  # trials of a successive-halving search stop at different epochs
        f = config.fidelity
        setup["fidelity"] = {"rungs": list(f.rungs), "eta": f.eta, "promotion": f.promotion, "bands": f.bands}
    text = json.dumps(setup, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def supernet_key(config: SearchConfig, checksum: str) -> str:
    """Identifies supernet scoring: the supernet (its checksum), the BN batches, the validation size
    and the data it scores on. Never equal to a proxy key (the setups differ in kind). On the
    supernet's own split (``[supernet] data = "supernet"``) the checksum fixes the images; the
    search's split (``"proxy"``, every key before that option) adds the search's data and seed."""
    p, s = config.proxy, config.supernet
    root = os.path.abspath(p.data_root) if p.data_root else p.data_root
    setup: dict[str, Any] = {"evaluator": "supernet", "checksum": checksum, "bn_batches": s.bn_batches,
                             "val_size": s.val_size or None, "dataset": p.dataset, "root": root}
    if s.data == "proxy":
        setup.update({"input": p.input_size, "limit": p.limit, "seed": config.seed})
    else:
        setup["data"] = "supernet"
    return hashlib.sha1(json.dumps(setup, sort_keys=True).encode()).hexdigest()[:12]


def scorer_for(config: SearchConfig, supernet: Any = None) -> Scorer:
    """The trial's scorer: the proxy training, or the supernet ``supernet`` (a SupernetInfo)."""
    if supernet is None:
        return Scorer("proxy", proxy_key(config))
    return Scorer("supernet", supernet_key(config, supernet.checksum), supernet.checksum, supernet.method)


def set_metric_names(study: optuna.Study, names: list[str]) -> None:
    with warnings.catch_warnings():  # "experimental" since Optuna 3.2; the names are what we want stored
        warnings.simplefilter("ignore")
        study.set_metric_names(names)


@dataclasses.dataclass(frozen=True)
class StudySetup:
    """What a study is created with and checked against on resume."""

    config: SearchConfig
    objectives: list[Objective]
    budgets: list[Budget]
    targets: dict[str, Target]
    proxy_key: str
    owner: str
    scorer: Scorer | None = None   # None: the proxy training with ``proxy_key``

    @property
    def accuracy_scorer(self) -> Scorer:
        return self.scorer or Scorer("proxy", self.proxy_key)


def open_study(storage: optuna.storages.BaseStorage, setup: StudySetup) -> optuna.Study:
    """Load the configured study (checked against the config) or create it with its metadata."""
    import optuna

    c = setup.config
    names = [o.name for o in setup.objectives]
    try:
        existing = {s.study_name for s in storage.get_all_studies()}
    except Exception as exc:
        raise StorageError(f"cannot read storage {c.storage_url}: {' '.join(str(exc).split())[:200]}") from None
    n_existing = storage.get_n_trials(storage.get_study_id_from_name(c.study)) if c.study in existing else 0
    # a resumed run does not replay the first draws; the sum wraps so it stays a valid numpy seed
    seed = None if c.seed is None else (c.seed + n_existing) % SEED_LIMIT
    sampler = make_sampler(c.sampler, seed, c.trials, len(setup.objectives))
    if c.study in existing:
        study = optuna.load_study(study_name=c.study, storage=storage, sampler=sampler)
        check_compatible(study, c, names, setup.accuracy_scorer)
        if not study.metric_names:  # a study from before metric names were stored
            set_metric_names(study, names)
        return study
    try:
        study = optuna.create_study(study_name=c.study, storage=storage, sampler=sampler,
                                    directions=[o.direction for o in setup.objectives])
    except optuna.exceptions.DuplicatedStudyError:  # another driver created it a moment ago
        return open_study(storage, setup)
    set_metric_names(study, names)  # optuna-dashboard and study.metric_names show them
    study.set_user_attr("creator", setup.owner)  # it seeds the presets (see seed_queue)
    study.set_user_attr("format", STUDY_FORMAT)
    study.set_user_attr("objectives", names)
    study.set_user_attr("objective_keys", [o.key for o in setup.objectives])
    study.set_user_attr("budgets", {b.name: b.limit for b in setup.budgets})
    study.set_user_attr("targets", {n: t.to_dict() for n, t in setup.targets.items()})
    study.set_user_attr("deploy_input", c.deploy_input)
    study.set_user_attr("deploy_classes", c.deploy_classes)
    study.set_user_attr("proxy_key", setup.accuracy_scorer.key)
    study.set_user_attr(keys.ACCURACY_SOURCE, setup.accuracy_scorer.source)
    if setup.accuracy_scorer.checksum:
        study.set_user_attr(keys.SUPERNET_CHECKSUM, setup.accuracy_scorer.checksum)
        study.set_user_attr(keys.SUPERNET_METHOD, setup.accuracy_scorer.method)
    study.set_user_attr("config", plain(c.to_dict()))
    return study


def check_compatible(study: optuna.Study, config: SearchConfig, names: list[str], scorer: Scorer | None = None) -> None:
    """A resumed study must have the config's objectives, search space and accuracy scorer."""
    stored = study.user_attrs.get("objectives")
    if stored is not None and list(stored) != names:
        raise SearchError(f"study {config.study!r} was created with objectives {stored}, not {names}; "
                          "use another --study name")
    stored_space = (study.user_attrs.get("config") or {}).get("space", plain(config.space))
    if stored_space != plain(config.space):  # Optuna cannot mix parameter distributions in one study
        raise SearchError(f"study {config.study!r} was created with another search space ([space] table); "
                          "use the same config to resume it, or another --study name")
    stored_rungs = list(((study.user_attrs.get("config") or {}).get("fidelity") or {}).get("rungs") or [])
    if stored_rungs != list(config.fidelity.rungs):
        def said(rungs: list[int]) -> str:
            return f"[fidelity] rungs {rungs}" if rungs else "no [fidelity] rungs"
        raise SearchError(f"study {config.study!r} was created with {said(stored_rungs)}, not "
                          f"{said(list(config.fidelity.rungs))}; one front cannot mix them: use the same config to "
                          "resume it, or another --study name")
    if scorer is not None:
        check_same_scorer(study, config.study, scorer)


def check_same_scorer(study: optuna.Study, name: str, scorer: Scorer) -> None:
    """One study, one scorer: proxy accuracies and the scores of a supernet (or of two supernets)
    are on different scales, so one front must not mix them. Studies of earlier versions hold proxy
    accuracies."""
    stored = Scorer(study.user_attrs.get(keys.ACCURACY_SOURCE) or "proxy",
                    checksum=study.user_attrs.get(keys.SUPERNET_CHECKSUM),
                    method=study.user_attrs.get(keys.SUPERNET_METHOD))
    if (stored.source, stored.checksum) == (scorer.source, scorer.checksum):
        return
    raise SearchError(f"study {name!r} holds accuracies from {stored.describe()}, not from {scorer.describe()}: "
                      "one front cannot mix them; use another --study name (results stay apart per study)")


def seed_queue(study: optuna.Study, space: SearchSpace, config: SearchConfig, owner: str, notes: list[str]) -> None:
    """Re-queue trials of dead drivers, then the paper presets (once per study)."""
    from experiments.rung_scheduler import carried_attrs

    # SQLite: this driver holds the file's writer lock, so every RUNNING trial is a dead driver's, also
    # one killed between creating a trial and storing its owner (no owner: kept 24 h otherwise)
    sole_writer = parse_storage_url(config.storage_url).kind == "sqlite"
    recovered = recover_stale_trials(study, 0.0 if sole_writer else config.stale_after_s)
    for params, attrs in recovered:  # a successive-halving trial takes its finished rungs along
        study.enqueue_trial(params, user_attrs={**carried_attrs(attrs),
                                                **TrialRecord(requeued_from_stale=True).to_user_attrs()})
    if recovered:
        notes.append(f"re-queued {len(recovered)} trial(s) left running by a stopped driver")
    if study.user_attrs.get("presets_enqueued"):
        return
    creator = study.user_attrs.get("creator")
    if creator not in (None, owner) and owner_alive(creator, time.time(), config.stale_after_s):
        return  # the driver that created the study seeds them (two drivers starting together: once)
    for name in config.presets:
        arch = get_preset(name)
        problems = space.violations(arch)
        if problems:
            notes.append(f"preset {name} lies outside the search space, skipped ({problems[0]})")
            continue
        study.enqueue_trial(space.params_of(arch), user_attrs=TrialRecord(preset=name).to_user_attrs())
    study.set_user_attr("presets_enqueued", True)


@dataclasses.dataclass(frozen=True)
class TrialCounts:
    """``finished`` = COMPLETE + counted failures (re-queued and environment failures do not count)."""

    finished: int
    complete: int
    failed: int
    running: int


def count_trials(study: optuna.Study) -> TrialCounts:
    """This study's trial counts, from storage."""
    return StudyTally(study).refresh()


class StudyTally:
    """A study's counts and Pareto-front size, kept up to date as trials finish.

    A finished trial never changes, so each is counted (and offered to the front) once, when it is
    first seen; :meth:`refresh` reads the study once (Optuna's cached storage fetches only new and
    unfinished trials) and looks at nothing it has seen finished; a trial the driver tells is counted
    from ``tell``'s return (:meth:`observe`), without a read. The driver reads the study twice per
    trial (before it asks, and after a result comes back), so the cost per trial stays flat as the
    study grows, where counting every trial and re-taking the front (quadratic in the worst case)
    grew with it. Other drivers' trials (journal or server storages) are seen like this driver's.
    ``on_complete`` is shown each COMPLETE trial once (the reuse index, which so reads nothing).

    The front is :func:`experiments.report.front_trials`'s: feasible COMPLETE trials, non-dominated,
    ties kept. A trial one front member dominates is dropped for good (whatever later pushes that
    member off the front dominates the dropped trial as well).
    """

    def __init__(self, study: optuna.Study,
                 on_complete: Callable[[optuna.trial.FrozenTrial], None] | None = None) -> None:
        from optuna.study import StudyDirection

        self.study = study
        self.on_complete = on_complete   # told of each COMPLETE trial once, when first seen
        self._sign = [-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in study.directions]
        self._seen: set[int] = set()   # finished trials already counted
        self._complete = self._failed = 0
        self._front: dict[int, tuple[float, ...]] = {}   # trial number -> values, all minimised
        self.counts = TrialCounts(0, 0, 0, 0)

    @property
    def front_size(self) -> int:
        """Non-dominated feasible COMPLETE trials as of the last :meth:`refresh`."""
        return len(self._front)

    def front_numbers(self) -> list[int]:
        return sorted(self._front)

    def refresh(self) -> TrialCounts:
        from optuna.trial import TrialState

        running = 0
        for t in self.study.get_trials(deepcopy=False,
                                       states=(TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING)):
            if t.state == TrialState.RUNNING:
                running += 1
            elif t.number not in self._seen:
                self._see(t)
        self.counts = TrialCounts(self._complete + self._failed, self._complete, self._failed, running)
        return self.counts

    def observe(self, trial: optuna.trial.FrozenTrial) -> TrialCounts:
        """Count a trial this driver just told (``study.tell`` returns it) without reading the study:
        the next :meth:`refresh` skips it. ``running`` stays as of the last refresh."""
        from optuna.trial import TrialState

        if trial.state in (TrialState.COMPLETE, TrialState.FAIL) and trial.number not in self._seen:
            self._see(trial)
            self.counts = TrialCounts(self._complete + self._failed, self._complete, self._failed,
                                      self.counts.running)
        return self.counts

    def _see(self, trial: optuna.trial.FrozenTrial) -> None:
        from optuna.trial import TrialState

        self._seen.add(trial.number)
        self._count(trial)
        if self.on_complete is not None and trial.state == TrialState.COMPLETE:
            self.on_complete(trial)

    def _count(self, trial: optuna.trial.FrozenTrial) -> None:
        from optuna.trial import TrialState

        if trial.state != TrialState.COMPLETE:
            if counts_toward_target(trial):
                self._failed += 1
            return
        self._complete += 1
        if trial.values is not None and all(v <= 0 for v in trial.constraints.values()):
            self._offer(trial.number, tuple(s * v for s, v in zip(self._sign, trial.values)))

    def _offer(self, number: int, point: tuple[float, ...]) -> None:
        def dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
            return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))

        if any(dominates(q, point) for q in self._front.values()):
            return
        for other in [n for n, q in self._front.items() if dominates(point, q)]:
            del self._front[other]
        self._front[number] = point


def places_taken_before(study: optuna.Study, number: int) -> int:
    """Trials numbered below ``number`` that hold a place toward the target: waiting, running, or
    finished and counted. The storage numbers trials in the order it creates them, so when several
    processes ask at the same moment for the study's last place, every one of them agrees on who
    asked first: each keeps its trial only while fewer than ``trials`` places are taken before it."""
    from optuna.trial import TrialState

    held = (TrialState.WAITING, TrialState.RUNNING)
    return sum(1 for t in study.get_trials(deepcopy=False) if t.number < number
               and (t.state in held or counts_toward_target(t)))


def target_total(config: SearchConfig, space: SearchSpace) -> int:
    """The finished trials to reach (``presets_only``: the presets inside the space, at most)."""
    if config.presets_only:
        return min(config.trials, sum(space.contains(get_preset(n)) for n in config.presets))
    return config.trials


@dataclasses.dataclass(frozen=True)
class Reusable:
    """An earlier COMPLETE trial of the same architecture and proxy setup."""

    study: str
    number: int
    record: TrialRecord
    same_latency: bool   # its study recorded the same targets with the same deploy settings


class ReuseIndex:
    """Finds reusable results: this study first, then the other studies of the same storage
    (read once, at start: their results do not change while this search runs). This study's trials
    come through :meth:`observe`, from the driver's :class:`StudyTally`, so a look-up reads nothing."""

    def __init__(self, study: optuna.Study, storage: optuna.storages.BaseStorage, setup: StudySetup) -> None:
        self.study = study
        self.name = setup.config.study
        self.scorer = setup.accuracy_scorer
        self.proxy_key = self.scorer.key
        self.enabled = setup.config.reuse_results
        self._others = self._other_studies(storage, setup) if self.enabled else {}
        self._own: dict[str, Reusable] = {}   # this study: arch id -> its first reusable trial
        self._indexed: set[int] = set()       # COMPLETE trials of this study already looked at

    def find(self, arch_id: str) -> Reusable | None:
        """This study's lowest-numbered reusable trial of ``arch_id`` among those :meth:`observe` was
        shown, else another study's. Reads nothing: the driver's :class:`StudyTally` shows it each
        COMPLETE trial once (``on_complete``), as it reads the study or tells a trial."""
        if not self.enabled:
            return None
        return self._own.get(arch_id) or self._others.get(arch_id)

    def observe(self, trial: optuna.trial.FrozenTrial) -> None:
        """Index one COMPLETE trial of this study (a finished trial never changes: indexed once)."""
        if not self.enabled or trial.number in self._indexed:
            return
        self._indexed.add(trial.number)
        found = trial.user_attrs.get(keys.ARCH_ID)
        if found and trial.user_attrs.get(keys.PROXY_KEY) == self.proxy_key:
            record = TrialRecord.from_user_attrs(trial.user_attrs)
            earlier = self._own.get(found)
            if self._same_scorer(record) and (earlier is None or trial.number < earlier.number):
                self._own[found] = Reusable(self.name, trial.number, record, True)

    def _same_scorer(self, record: TrialRecord) -> bool:
        """The key already tells scorers apart; the source and checksum are checked as well."""
        return record.source == self.scorer.source and record.supernet_checksum == self.scorer.checksum

    def _other_studies(self, storage: optuna.storages.BaseStorage, setup: StudySetup) -> dict[str, Reusable]:
        from optuna.trial import TrialState

        c = setup.config
        targets = json.loads(json.dumps({n: t.to_dict() for n, t in setup.targets.items()}))
        found: dict[str, Reusable] = {}
        for summary in storage.get_all_studies():
            if summary.study_name == self.name:
                continue
            attrs = summary.user_attrs
            stored_targets = attrs.get("targets") or {}
            same = (attrs.get("deploy_input") == c.deploy_input and attrs.get("deploy_classes") == c.deploy_classes
                    and all(stored_targets.get(n) == d for n, d in targets.items()))
            for t in storage.get_all_trials(summary._study_id, deepcopy=False, states=(TrialState.COMPLETE,)):
                record = TrialRecord.from_user_attrs(t.user_attrs)
                if record.arch_id and record.proxy_key == self.proxy_key and keys.ACCURACY in record.proxy \
                        and self._same_scorer(record):
                    found.setdefault(record.arch_id, Reusable(summary.study_name, t.number, record, same))
        return found
