"""The search driver: an Optuna study over the ShuffleNetV2 space, run with ask/tell.

One pass of the loop asks up to ``workers`` trials, costs each architecture analytically, gets its
latency on every target (measured where the target can be measured, else its calibrated estimate),
submits its proxy training to the evaluator and tells every result as soon as it arrives. The
study reaches ``trials`` *finished* trials: COMPLETE ones plus FAILED ones with a reason from the
candidate itself (build error, NaN loss, worker death, timeout). Trials failed because their
driver was killed, or for a reason outside the candidate (``experiments.failures``), are re-queued
and do not count.

Everything that can be checked without the study is checked first (``experiments.search_checks``):
a failing check is one line, and no storage, lock file or output folder has been created. Ray and
the evaluator start only after that, when the first training is submitted. The study itself
(open, validate, seed, count, reuse) is ``experiments.study_handling``; what a trial stores is an
``experiments.trial_record.TrialRecord``.

Latency measurement and training share this machine's cores, so with ``latency.isolate`` (the
default) local measurements run only while no local training is in flight: the driver works in
rounds (ask ``workers`` trials, measure them, train them, tell them). Measurements are cached per
architecture and target, so a resumed study or a repeated architecture costs nothing. Remote
targets (a Ray resource label) are measured on their board while the training runs.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from evaluator.ray_connect import check_ray_address
from experiments import search_checks as checks
from experiments.config import SearchConfig
from experiments.failures import ENVIRONMENT_FAILURE_LIMIT, failure_kind
from experiments.objectives import Budget, Objective, parse_budgets, parse_objectives
from experiments.progress import SearchProgress
from experiments.search_checks import largest_candidate, resolve_targets
from experiments.storage import check_writer_free, open_storage, owner_token, writer_lock
from experiments.study_handling import (STUDY_FORMAT, ReuseIndex, SearchError, StudySetup, TrialCounts, count_trials,
                                        make_sampler, open_study, proxy_key, seed_queue, target_total)
from experiments.trial_record import MAC, OWNER, LatencyRecord, TrialRecord, finite, plain
from search_space import DEFAULT_SPACE, Architecture, SearchSpace, preset_name
from search_space.errors import ShufflenasError

if TYPE_CHECKING:
    import optuna

    from latency_models.measurement.targets import Target

EVAL_POLL_S = 0.5
__all__ = ["STUDY_FORMAT", "EnvironmentStopError", "SearchDriver", "SearchError", "SearchResult", "check_ray_address",
           "largest_candidate", "make_sampler", "proxy_key", "resolve_targets", "run_search"]


class EnvironmentStopError(SearchError):
    """Trials keep failing for a reason outside the candidates: the search stops (resumable)."""


def _trace(event: str, number: int) -> None:
    """``trace: EVENT TRIAL`` on stderr when ``SHUFFLENAS_TRACE`` is set, so crash tests can kill the
    driver in a known phase (measure, train, told)."""
    if os.environ.get("SHUFFLENAS_TRACE"):
        os.write(2, f"trace: {event} {number}\n".encode())


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


class OverheadClock:
    """Sums the driver's own time (ask, tell, bookkeeping, storage writes): ``with clock: ...``."""

    def __init__(self) -> None:
        self.total = 0.0
        self._started = 0.0

    def __enter__(self) -> OverheadClock:
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.total += time.perf_counter() - self._started


def local_latency(arch: Architecture, target: Target, config: SearchConfig) -> LatencyRecord:
    """One target's latency as far as it is taken here, through ``latency_models.latency.latency_for``
    (the project's one measure-or-estimate rule). Estimate-only targets get their estimate (never a
    measurement); measured targets are measured (remote ones later, on their board) with the
    calibrated estimate beside it when asked."""
    from latency_models.latency import latency_for

    model = config.latency.estimate_model
    if target.is_estimate:
        est = latency_for(arch, target, allow_measure=False, estimate_model=model)
        return LatencyRecord.estimated(est.median_ms, est.model)
    record = LatencyRecord()
    if config.latency.record_estimates and target.calibration:
        try:  # never measures: an estimate that would need a measurement is not recorded
            est = latency_for(arch, target, mode="estimate", allow_measure=False, estimate_model=model)
            record = LatencyRecord(estimate_ms=float(est.median_ms), estimate_model=est.model)
        except ShufflenasError:
            pass  # no calibration for this target yet: the measurement is what counts
    if target.is_remote:
        return record
    m = latency_for(arch, target, budget_s=config.latency.measure_budget_s, num_classes=config.deploy_classes,
                    estimate_model=model)
    return LatencyRecord.measured(m.to_dict(), estimate=record)


@dataclasses.dataclass
class _Pending:
    """A trial between ask and tell; ``record`` grows as results arrive."""

    trial: optuna.trial.Trial
    arch: Architecture | None
    record: TrialRecord
    remote: dict[str, Any] = dataclasses.field(default_factory=dict)   # target name -> ray ObjectRef
    reused: bool = False            # the proxy result comes from an earlier trial (no training)
    failure_kind: str | None = None  # set when the failure was classified from its exception


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
        self.clock = OverheadClock()
        # set by prepare() (checks) and _setup() (storage)
        self.space: SearchSpace = DEFAULT_SPACE
        self.targets: dict[str, Target] = {}
        self.objectives: list[Objective] = []
        self.budgets: list[Budget] = []
        self.proxy_key = ""
        self.proxy_config: Any = None
        self._data: Any = None
        self.storage: Any = None
        self.study: optuna.Study | None = None  # type: ignore[assignment]
        self._reuse: ReuseIndex | None = None
        self._progress: SearchProgress | None = None
        self._environment_failures = 0

    @property
    def overhead_s(self) -> float:
        """Ask + tell + bookkeeping + storage writes so far (no training, no latency)."""
        return self.clock.total

    # -- setup --------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Every check that needs no storage; nothing is written (see the module docstring)."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        c = self.config
        check_writer_free(c.storage_url)  # a second writer is told now, before the slow checks
        self.space = SearchSpace.from_dict(c.space) if c.space else DEFAULT_SPACE
        checks.check_estimate_model(c)
        self.targets = resolve_targets(c, self.notes)
        self.objectives = parse_objectives(c.objectives, self.targets)
        self.budgets = parse_budgets(c.budgets, self.targets)
        self.proxy_key = proxy_key(c)
        self.proxy_config = checks.build_proxy_config(c)
        checks.check_ray(c, self.targets)
        checks.check_device(c, self.proxy_config)
        self._data = checks.load_data(c, self.space, self.proxy_config, None if self._own_evaluator else self._evaluator)

    def _setup(self) -> None:
        """Open (or create) the storage and the study: only after :meth:`prepare` passed."""
        setup = StudySetup(self.config, self.objectives, self.budgets, self.targets, self.proxy_key, self.owner)
        self.storage = open_storage(self.config.storage_url, create=True)
        self.study = open_study(self.storage, setup)
        self._reuse = ReuseIndex(self.study, self.storage, setup)

    def _counts(self) -> TrialCounts:
        with self.clock:
            return count_trials(self.study)

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> SearchResult:
        self.prepare()  # nothing is written until every check passed
        with writer_lock(self.config.storage_url):  # SQLite: one search process per file
            return self._run()

    def _run(self) -> SearchResult:
        start = time.perf_counter()
        self._setup()
        seed_queue(self.study, self.space, self.config, self.owner, self.notes)
        total = target_total(self.config, self.space)
        finished = self._counts().finished
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
                    counts = self._counts()
                    want = total - counts.finished - counts.running
                    room = self.config.workers - len(pending)
                    if want > 0 and room > 0 and not (rounds and pending):
                        new_trials += self._start_round(min(want, room), pending)
                        continue
                    if not pending:
                        break
                    self._collect(pending)
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

    def _start_round(self, n: int, pending: dict[str, _Pending]) -> int:
        """Ask ``n`` trials; measure them (after draining local trainings when isolating); submit them."""
        batch: list[_Pending] = []
        for _ in range(n):
            with self.clock:
                item = self._ask()
            if item.arch is None:
                self._finish(item, None)
                continue
            with self.clock:
                earlier = self._reuse.find(item.arch.arch_id) if self._reuse is not None else None
            if earlier is not None:  # the proxy result is copied; latency too when measured the same way
                item.record = item.record.reusing(earlier.record, earlier.study, earlier.number,
                                                  same_latency=earlier.same_latency)
                item.reused = True
                if earlier.same_latency:
                    self._finish(item, None)
                    self._progress_update()
                    continue
            batch.append(item)
        if not batch:
            return n
        if self.config.latency.isolate and pending and not self._all_cached(batch):
            while pending:  # trainings would share the cores with the measurement
                self._collect(pending)
        for item in batch:
            self._take_latency(item)
            if item.record.failed or item.reused:
                self._finish(item, None)
                self._progress_update()
                continue
            self._submit(item, pending)
        return n

    def _submit(self, item: _Pending, pending: dict[str, _Pending]) -> None:
        from evaluator.base import EvalTask

        evaluator = self._get_evaluator()
        key = f"{self.config.study}:{item.trial.number}"
        with self.clock:
            evaluator.submit(EvalTask(key, item.arch, self.proxy_config))
            _trace("train", item.trial.number)
        pending[key] = item

    def _collect(self, pending: dict[str, _Pending]) -> None:
        outcomes = self._get_evaluator().poll(EVAL_POLL_S)
        for outcome in outcomes:
            item = pending.pop(outcome.key, None)
            if item is not None:
                self._finish(item, outcome)
        if outcomes:
            self._progress_update()

    def _requeue_pending(self, pending: dict[str, _Pending]) -> None:
        """Fail and re-queue the trials still in flight when the search stops on its own."""
        from optuna.trial import TrialState

        marks = TrialRecord(fail_reason="interrupted: the search stopped; re-queued", requeued=True)
        for item in pending.values():
            for key, value in marks.to_user_attrs().items():
                item.trial.set_user_attr(key, value)
            self.study.tell(item.trial, state=TrialState.FAIL)
            if item.trial.params:
                self.study.enqueue_trial(dict(item.trial.params),
                                         user_attrs=TrialRecord(requeued_from=item.trial.number).to_user_attrs())
        pending.clear()

    # -- one trial ----------------------------------------------------------------------------
    def _ask(self) -> _Pending:
        from latency_models.costs.analytic import summary

        trial = self.study.ask()
        trial.set_user_attr(OWNER, self.owner)
        record = TrialRecord(owner=self.owner, proxy_key=self.proxy_key)
        try:
            arch = self.space.suggest(trial)
        except ShufflenasError as exc:
            return _Pending(trial, None, record.failing(f"invalid architecture: {exc}"))
        costs = summary(arch, self.config.deploy_input, self.config.deploy_classes)
        return _Pending(trial, arch, record.with_arch(arch.to_string(), arch.arch_id, preset_name(arch), costs))

    def _take_latency(self, item: _Pending) -> None:
        """Every target's latency taken here (remote ones submitted); a failure fails the trial."""
        try:
            item.remote = self._submit_remote(item.arch)
            _trace("measure", item.trial.number)
            for name, target in self.targets.items():
                item.record = item.record.with_latency(name, local_latency(item.arch, target, self.config))
        except ShufflenasError as exc:
            item.record, item.failure_kind = item.record.failing(f"latency: {exc}"), failure_kind(exc)
        except Exception as exc:  # export / runtime failure of this candidate
            reason = f"latency: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            item.record, item.failure_kind = item.record.failing(reason), failure_kind(exc)

    def _submit_remote(self, arch: Architecture) -> dict[str, Any]:
        remote = {name: t for name, t in self.targets.items() if t.is_remote}
        if not remote:
            return {}
        from evaluator.remote_latency import submit_measurement

        budget = self.config.latency.measure_budget_s
        return {name: submit_measurement(arch, t, budget_s=budget) for name, t in remote.items()}

    def _collect_remote(self, item: _Pending) -> str | None:
        """The remote measurements into the record; the failure reason, if one failed."""
        import ray

        from evaluator.remote_latency import collect

        for name, ref in item.remote.items():
            try:
                m = collect(ray.get(ref), item.arch, self.targets[name])
            except Exception as exc:  # the board died or the measurement raised
                return f"latency on {name} failed: {' '.join(str(exc).split())[:300]}"
            data = m.to_dict() if hasattr(m, "to_dict") else dict(m)
            item.record = item.record.with_latency(name, LatencyRecord.measured(data, estimate=item.record.latency.get(name)))
        return None

    def _all_cached(self, batch: list[_Pending]) -> bool:
        """Whether every local measurement of ``batch`` is already in the measurement cache."""
        from latency_models.measurement.measure import lookup

        local = [t for t in self.targets.values() if not t.is_estimate and not t.is_remote]
        if self.config.deploy_classes != 1000:
            return not local
        return all(lookup(item.arch, t) is not None for item in batch for t in local)

    def _finish(self, item: _Pending, outcome: Any) -> bool:
        """Tell one trial; returns True when it completed (False: failed with a reason)."""
        from optuna.trial import TrialState

        reason = item.record.fail_reason
        if reason is None and outcome is not None:
            if not outcome.ok:
                reason = f"training failed: {outcome.error or 'unknown error'}"
            else:
                item.record = item.record.with_result(outcome.result, getattr(outcome, "attempts", 1),
                                                      getattr(outcome, "worker_pid", None))
                if not finite(item.record.accuracy):
                    reason = f"training gave no finite accuracy ({item.record.accuracy!r})"
        if reason is None and item.remote:
            reason = self._collect_remote(item)
        attrs = item.record.to_user_attrs()
        values = None
        if reason is None:
            values = [attrs.get(o.key) for o in self.objectives]
            missing = [o.name for o, v in zip(self.objectives, values) if not finite(v)]
            if missing:
                reason = f"no finite value for objective(s) {', '.join(missing)}"
        trial = item.trial
        with self.clock:
            if reason is not None:
                kind = item.failure_kind or failure_kind(reason)
                attrs = dataclasses.replace(item.record, fail_reason=None).failing(reason[:1000], kind).to_user_attrs()
            for key, value in attrs.items():
                if key != OWNER:
                    trial.set_user_attr(key, plain(value))
            if reason is not None:
                self.study.tell(trial, state=TrialState.FAIL)
            else:
                for budget in self.budgets:
                    trial.set_constraint(budget.constraint_key, budget.violation(attrs[budget.key]))
                self.study.tell(trial, values)
            _trace("told", trial.number)
        if reason is None:
            self._environment_failures = 0
            self._log(self._describe(trial.number, attrs))
            return True
        if kind == "environment":
            self._environment_failure(item, reason)
        else:
            self._environment_failures = 0
            self._log(f"trial {trial.number} failed: {reason[:200]}")
        return False

    def _environment_failure(self, item: _Pending, reason: str) -> None:
        """Queue the parameters again (a preset keeps its place); stop when it keeps happening."""
        trial = item.trial
        if trial.params:
            marks = TrialRecord(requeued_from=trial.number, preset=item.record.preset)
            self.study.enqueue_trial(dict(trial.params), user_attrs=marks.to_user_attrs())
        self._environment_failures += 1
        self._log(f"trial {trial.number} failed outside the candidate, re-queued: {reason[:200]}")
        if self._environment_failures >= ENVIRONMENT_FAILURE_LIMIT:
            raise EnvironmentStopError(f"stopped: {self._environment_failures} trials in a row failed for a reason outside "
                                       f"the candidate (last: {' '.join(reason.split())[:300]}); their parameters are "
                                       "queued again: fix the cause and run the same command to resume")

    # -- reporting ----------------------------------------------------------------------------
    def _describe(self, number: int, attrs: dict[str, Any]) -> str:
        record = TrialRecord.from_user_attrs(attrs)
        parts = [f"trial {number}"]
        if record.preset:
            parts.append(f"[{record.preset}]")
        if finite(record.accuracy):
            parts.append(f"acc {record.accuracy:.3f}")
        for name in self.targets:
            value = record.latency_ms(name)
            if finite(value):
                parts.append(f"{name} {value:.2f} ms")
        if MAC in record.costs:
            parts.append(f"MAC {record.costs[MAC] / 1e6:.1f}M")
        if record.reused_from is not None:
            where = record.reused_from_study
            other = f" of study {where}" if where and where != self.config.study else ""
            parts.append(f"(reused trial {record.reused_from}{other})")
        parts += [f"INFEASIBLE {text}" for text in self._violations(attrs)]
        return " ".join(parts)

    def _violations(self, attrs: dict[str, Any]) -> list[str]:
        """``latency:local-cpu 15.27 > 3.0 ms`` for every budget the trial exceeds."""
        out = []
        for budget in self.budgets:
            value = attrs.get(budget.key)
            if finite(value) and budget.violation(value) > 0:
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

    def _progress_update(self) -> None:
        if self._progress is None:
            return
        finished = self._counts().finished
        with self.clock:
            self._progress.update(min(finished, target_total(self.config, self.space)), self._front_size())

    def _front_size(self) -> int:
        from experiments.report import front_numbers

        return len(front_numbers(self.study))

    def _get_evaluator(self) -> Any:
        """The evaluator (Ray starts here, at the first training: after every check passed)."""
        if self._evaluator is None:
            c = self.config
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
            from evaluator import make_evaluator

            self._evaluator = make_evaluator(kind, self._data, **options)
        return self._evaluator

    def _result(self, total: int, new_trials: int, wall_s: float) -> SearchResult:
        from optuna.trial import TrialState

        from experiments.report import front_rows

        counts = self._counts()
        infeasible = []
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            violations = self._violations(t.user_attrs)
            if violations:
                infeasible.append({"trial": t.number, "preset": TrialRecord.from_user_attrs(t.user_attrs).preset,
                                   "violations": violations})
        return SearchResult(
            study=self.config.study, storage=self.config.storage_url, trials=total, finished=counts.finished,
            complete=counts.complete, failed=counts.failed, new_trials=new_trials, wall_s=round(wall_s, 2),
            objectives=[o.name for o in self.objectives], targets=list(self.targets),
            front=front_rows(self.study), notes=list(self.notes), overhead_s=round(self.overhead_s, 4),
            infeasible=infeasible,
        )


def run_search(config: SearchConfig, *, evaluator: Any = None, echo: Callable[[str], None] | None = None) -> SearchResult:
    """Run (or resume) the search ``config`` describes; see :class:`SearchDriver`."""
    return SearchDriver(config, evaluator=evaluator, echo=echo).run()
