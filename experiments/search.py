"""The search driver: an Optuna study over the ShuffleNetV2 space, run with ask/tell.

(About 400 lines: the scheduling loop is one class whose methods share its state; the work on
one trial is in ``experiments.trial_steps``, the study in ``experiments.study_handling``, the checks in
``experiments.search_checks``.)

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
(open, validate, seed, count, reuse) is ``experiments.study_handling``; the work on one trial
(ask, latency, settle) is ``experiments.trial_steps``; what a trial stores is an
``experiments.trial_record.TrialRecord``. This module is the scheduling loop.

Latency measurement and training share this machine's cores, so with ``latency.isolate`` (the
default) local measurements run only while no local training is in flight: the driver works in
rounds (ask ``workers`` trials, measure them, train them, tell them). Measurements are cached per
architecture and target, so a resumed study or a repeated architecture costs nothing. Remote
targets (a Ray resource label) are measured on their board while the training runs.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from evaluator.ray_connect import check_ray_address
from experiments import search_checks as checks
from experiments import trial_steps as steps
from experiments.config import SearchConfig
from experiments.failures import ENVIRONMENT_FAILURE_LIMIT
from experiments.objectives import Budget, Objective, parse_budgets, parse_objectives
from experiments.progress import SearchProgress
from experiments.rung_scheduler import RungScheduler, carried_attrs
from experiments.search_checks import largest_candidate, resolve_targets
from experiments.storage import (check_writer_free, open_storage, owner_token, parse_storage_url, write_trial_attrs,
                                 writer_lock)
from experiments.study_handling import (STUDY_FORMAT, ReuseIndex, SearchError, StudySetup, TrialCounts,
                                        make_sampler, open_study, proxy_key, scorer_for, seed_queue, target_total)
from experiments.study_handling import StudyTally
from experiments.trial_record import OWNER, PRESET, Scorer, TrialRecord, finite
from experiments.trial_steps import OverheadClock, PendingTrial, local_latency
from search_space import DEFAULT_SPACE, SearchSpace

if TYPE_CHECKING:
    import optuna

    from latency_models.measurement.targets import Target

EVAL_POLL_S = 0.5
__all__ = ["STUDY_FORMAT", "EnvironmentStopError", "SearchDriver", "SearchError", "SearchResult", "check_ray_address",
           "largest_candidate", "local_latency", "make_sampler", "proxy_key", "resolve_targets", "run_search"]


class EnvironmentStopError(SearchError):
    """Trials keep failing for a reason outside the candidates: the search stops (resumable)."""


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
    accuracy_source: str = "proxy"              # or "supernet" (then ``supernet`` names it)
    supernet: dict[str, Any] | None = None      # path, checksum, method, epochs of the scoring supernet
    seconds_per_candidate: float | None = None  # mean training / scoring time of this run's candidates
    charged_s: float | None = None  # with budget_s: CPU-seconds of proxy training the study has cost (compute_charge)

    def headline(self) -> str:
        """``N/T finished``, or what happened when the study already held the target."""
        if self.new_trials == 0 and self.finished >= self.trials:
            return f"{self.finished} finished (target {self.trials} reached; nothing to do)"
        if self.finished > self.trials:
            return f"{self.finished} finished (target {self.trials})"
        return f"{self.finished}/{self.trials} finished"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
        self.scorer = Scorer()
        self.supernet_info: Any = None
        self._eval_seconds: list[float] = []
        self._charged: float | None = None   # with budget_s: the study's cost so far (earlier runs included)
        self._budget_noted = False
        self.proxy_config: Any = None
        self._data: Any = None
        self.storage: Any = None
        self.study: optuna.Study | None = None  # type: ignore[assignment]
        self._reuse: ReuseIndex | None = None
        self._tally: StudyTally | None = None   # counts and front size, kept as trials finish
        self._shared_target: int | None = None   # the trials to reach, where other processes may ask too
        self._progress: SearchProgress | None = None
        self._environment_failures = 0
        self.rungs: RungScheduler | None = None   # successive halving ([fidelity] rungs), made in _setup

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
        scorer = checks.read_scorer(c)
        callers = None if self._own_evaluator else self._evaluator
        self._data = checks.load_data(c, self.space, self.proxy_config, callers, scorer)
        self.supernet_info = checks.check_supernet(c, self.space, self._data, scorer)  # before any trial
        self.scorer = scorer_for(c, self.supernet_info)
        self.proxy_key = self.scorer.key
        given = getattr(self._evaluator, "info", None) if not self._own_evaluator else None
        if getattr(given, "checksum", self.scorer.checksum) != self.scorer.checksum:
            raise SearchError(f"the evaluator given scores with supernet {given.checksum}, but the config's scorer is "
                              f"{self.scorer.describe()}")
        if self.supernet_info is not None:
            info = self.supernet_info
            self.notes.append(f"accuracy: supernet {info.checksum} ({info.method}, {info.epochs} epochs, {info.path}), "
                              f"BN recalibrated on {c.supernet.bn_batches} batches, validated on "
                              f"{_val_images(c, self._data)} images of "
                              f"{'the split it held out' if c.supernet.data == 'supernet' else 'the search split'}")

    def _setup(self) -> None:
        """Open (or create) the storage and the study: only after :meth:`prepare` passed."""
        setup = StudySetup(self.config, self.objectives, self.budgets, self.targets, self.proxy_key, self.owner,
                           self.scorer)
        self.storage = open_storage(self.config.storage_url, create=True)
        self.study = open_study(self.storage, setup)
        self._reuse = ReuseIndex(self.study, self.storage, setup)
        if self.config.fidelity.enabled:
            self.rungs = RungScheduler(self.config.fidelity, self.objectives, self.study)
            self.notes.append(f"successive halving: rungs {list(self.config.fidelity.rungs)} epochs, keep 1/"
                              f"{self.config.fidelity.eta} per rung, promotion by {self.config.fidelity.promotion}")

    def _counts(self) -> TrialCounts:
        with self.clock:
            return self._tallied().refresh()

    def _tallied(self) -> StudyTally:
        """The study's tally; it shows the reuse index each COMPLETE trial it sees, so the index
        never reads the study itself."""
        if self._tally is None or self._tally.study is not self.study:
            self._tally = StudyTally(self.study, self._reuse.observe if self._reuse is not None else None)
        return self._tally

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> SearchResult:
        self.prepare()  # nothing is written until every check passed
        with writer_lock(self.config.storage_url):  # SQLite: one search process per file
            return self._run()

    def _run(self) -> SearchResult:
        start = time.perf_counter()
        self._setup()
        seed_queue(self.study, self.space, self.config, self.owner, self.notes)
        if self.config.budget_s is not None:
            from experiments.compute_charge import study_charge

            self._charged = study_charge(self.study).seconds
        total = target_total(self.config, self.space)
        # SQLite has one writer (the lock above); on a journal or server storage other processes ask too,
        # so each new trial checks that the study's last place was not taken first (one more read)
        self._shared_target = total if parse_storage_url(self.config.storage_url).kind != "sqlite" else None
        finished = self._counts().finished
        new_trials = 0
        pending: dict[str, PendingTrial] = {}
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
                    room = self.config.workers - len(pending) if not self._spent() else 0
                    if room > 0 and self._promote(pending):  # ASHA: a promotion goes before a new trial
                        continue
                    if want > 0 and room > 0 and not (rounds and pending):
                        new_trials += self._start_round(min(want, room), pending)
                        continue
                    if not pending:
                        if self.rungs is not None and self.rungs.waiting:
                            self._tell_waiting()
                            continue
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

    def _spent(self) -> bool:
        """Whether ``budget_s`` is used up: then nothing new starts (the first time, a note says so)."""
        budget = self.config.budget_s
        if budget is None or self._charged is None or self._charged < budget:
            return False
        if not self._budget_noted:
            self._budget_noted = True
            note = (f"compute budget reached: {self._charged:.0f} of {budget:g} CPU-s of proxy training; no new "
                    "trials or promotions")
            self.notes.append(note)
            self._log(note)
        return True

    def _start_round(self, n: int, pending: dict[str, PendingTrial]) -> int:
        """Ask up to ``n`` trials (fewer when another process took the last places first); measure them
        (after draining local trainings when isolating); submit them. Returns how many were asked."""
        batch: list[PendingTrial] = []
        asked = 0
        for _ in range(n):
            with self.clock:
                item = steps.ask(self.study, self.space, self.config, self.owner, self.scorer,
                                 self._shared_target)
            if item is None:  # another process took the last place first
                break
            asked += 1
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
            return asked
        if self.config.latency.isolate and pending and not steps.all_cached(batch, self.targets, self.config):
            while pending:  # trainings would share the cores with the measurement
                self._collect(pending)
        for item in batch:
            steps.take_latency(item, self.targets, self.config)
            if item.record.failed or item.reused:
                self._finish(item, None)
                self._progress_update()
                continue
            if self.rungs is not None and self.rungs.adopt(item, f"{self.config.study}:{item.trial.number}"):
                steps.trace("adopt", item.trial.number)
                self._log(f"trial {item.trial.number} resumes at rung {item.record.rung} epochs "
                          f"(acc {item.record.accuracy:.3f}), nothing retrained")
                continue
            self._submit(item, pending)
        return asked

    def _submit(self, item: PendingTrial, pending: dict[str, PendingTrial], rung: int = 0) -> None:
        """Train ``item`` (with successive halving: for the epochs of rung index ``rung``)."""
        from evaluator.base import EvalTask

        evaluator = self._get_evaluator()
        key = f"{self.config.study}:{item.trial.number}"
        config = self.proxy_config
        if self.rungs is not None:
            config = config.replace(epochs=self.rungs.epochs(rung))
            key = f"{key}@{config.epochs}"
            self.rungs.started(item.trial.number, rung)
        with self.clock:
            evaluator.submit(EvalTask(key, item.arch, config))
            steps.trace("train", item.trial.number)
        pending[key] = item

    def _promote(self, pending: dict[str, PendingTrial]) -> bool:
        """Submit the best waiting trial that earned its next rung; False when none did."""
        if self.rungs is None:
            return False
        with self.clock:
            chosen = self.rungs.promote()
        if chosen is None:
            return False
        item, index = chosen
        self._log(f"trial {item.trial.number} promoted: rung {self.rungs.epochs(index - 1)} -> "
                  f"{self.rungs.epochs(index)} epochs (acc {item.record.accuracy:.3f} at rung "
                  f"{self.rungs.epochs(index - 1)})")
        self._submit(item, pending, index)
        return True

    def _tell_waiting(self) -> None:
        """Nothing left to run: every waiting trial is told with its highest rung's accuracy."""
        for waiting in self.rungs.drain():
            self._finish(waiting.item, waiting.outcome)
        self._progress_update()

    def _rung_done(self, item: PendingTrial, outcome: Any) -> bool:
        """Successive halving: record a rung's result; True when the trial is to be told now."""
        if self.rungs is None:
            return True
        if not outcome.ok or item.record.failed:
            self.rungs.failed(item.trial.number)
            return True
        with self.clock:
            done = self.rungs.finished(item, outcome)
        if not done:
            steps.trace("rung", item.trial.number)
            self._log(f"trial {item.trial.number} rung {item.record.rung} epochs: acc {item.record.accuracy:.3f}, "
                      "waiting")
        return done

    def _collect(self, pending: dict[str, PendingTrial]) -> None:
        outcomes = self._get_evaluator().poll(EVAL_POLL_S)
        for outcome in outcomes:
            seconds = outcome.result.train_time_s if outcome.result is not None else None
            if self._charged is not None and finite(seconds):
                self._charged += float(seconds)   # every training, a rung's too: each trains from scratch
            item = pending.pop(outcome.key, None)
            if item is not None and self._rung_done(item, outcome):
                self._finish(item, outcome)
        if outcomes:
            self._progress_update()

    def _requeue_pending(self, pending: dict[str, PendingTrial]) -> None:
        """Fail and re-queue the trials still in flight when the search stops on its own."""
        from optuna.trial import TrialState

        marks = TrialRecord(fail_reason="interrupted: the search stopped; re-queued", requeued=True)
        waiting = [w.item for w in self.rungs.drain()] if self.rungs is not None else []
        for item in [*pending.values(), *waiting]:
            for key, value in marks.to_user_attrs().items():
                item.trial.set_user_attr(key, value)
            self.study.tell(item.trial, state=TrialState.FAIL)
            if item.trial.params:
                carried = carried_attrs(item.record.to_user_attrs())  # finished rungs are not trained again
                self.study.enqueue_trial(dict(item.trial.params), user_attrs={
                    **carried, **TrialRecord(requeued_from=item.trial.number).to_user_attrs()})
        pending.clear()

    def _finish(self, item: PendingTrial, outcome: Any) -> bool:
        """Tell one trial; returns True when it completed (False: failed with a reason)."""
        from optuna.trial import TrialState

        told = steps.settle(item, outcome, self.targets, self.objectives)
        if self._charged is not None and outcome is None and item.reused:  # a copy: what study_charge charges it
            from experiments.compute_charge import trial_charge

            self._charged += trial_charge(TrialRecord.from_user_attrs(told.attrs), self.config.study)
        seconds = outcome.result.train_time_s if outcome is not None and outcome.result is not None else None
        if finite(seconds):
            self._eval_seconds.append(float(seconds))
        trial = item.trial
        with self.clock:  # the attrs (and constraints) in one transaction, then the tell
            attrs = {key: value for key, value in told.attrs.items() if key != OWNER}
            if told.values is None:
                write_trial_attrs(self.study, trial, attrs)
                frozen = self.study.tell(trial, state=TrialState.FAIL)
            else:
                write_trial_attrs(self.study, trial, attrs, {b.constraint_key: b.violation(told.attrs[b.key])
                                                             for b in self.budgets})
                frozen = self.study.tell(trial, told.values)
            self._tallied().observe(frozen)  # counted (and indexed for reuse) without reading the study
            steps.trace("told", trial.number)
        if told.reason is None:
            self._environment_failures = 0
            self._log(steps.describe(trial.number, told.attrs, list(self.targets), self.budgets, self.config.study))
            return True
        if told.kind == "environment":
            self._environment_failure(item, told.reason)
        else:
            self._environment_failures = 0
            self._log(f"trial {trial.number} failed: {told.reason[:200]}")
        return False

    def _environment_failure(self, item: PendingTrial, reason: str) -> None:
        """Queue the parameters again (a preset keeps its place); stop when it keeps happening."""
        trial = item.trial
        if trial.params:
            marks = TrialRecord(requeued_from=trial.number, preset=item.record.preset)
            carried = carried_attrs(item.record.to_user_attrs())  # its finished rungs are not trained again
            self.study.enqueue_trial(dict(trial.params), user_attrs={**carried, **marks.to_user_attrs()})
        self._environment_failures += 1
        self._log(f"trial {trial.number} failed outside the candidate, re-queued: {reason[:200]}")
        if self._environment_failures >= ENVIRONMENT_FAILURE_LIMIT:
            raise EnvironmentStopError(f"stopped: {self._environment_failures} trials in a row failed for a reason outside "
                                       f"the candidate (last: {' '.join(reason.split())[:300]}); their parameters are "
                                       "queued again: fix the cause and run the same command to resume")

    def _log(self, message: str) -> None:
        if self._progress is not None:
            self._progress.log(message)
        if self._echo is not None:
            self._echo(message)

    def _progress_update(self) -> None:
        if self._progress is None:
            return
        finished = self._tallied().counts.finished  # as of the last read plus every trial told since
        with self.clock:
            self._progress.update(min(finished, target_total(self.config, self.space)), self._front_size())

    def _front_size(self) -> int:
        """As of the last count (every caller counts first): kept as trials finish, never re-taken.
        With successive halving the front is re-taken (its highest rung moves; trials train for epochs)."""
        if self.rungs is not None and self.study is not None:
            from experiments.report import front_numbers

            return len(front_numbers(self.study))
        return self._tally.front_size if self._tally is not None else 0

    def _get_evaluator(self) -> Any:
        """The evaluator (Ray starts here, at the first training: after every check passed)."""
        if self._evaluator is None:
            c = self.config
            kind = c.evaluator if c.evaluator != "auto" else ("ray" if c.workers > 1 else "sequential")
            options: dict[str, Any] = {}
            if kind == "supernet":
                s = c.supernet
                options = {"checkpoint": s.checkpoint, "bn_batches": s.bn_batches, "val_size": s.val_size,
                           "threads": s.threads, "workers": c.workers, "ray_address": c.ray_address,
                           "checksum": self.scorer.checksum}
                if c.trial_timeout_s is not None:
                    self.notes.append("trial_timeout_s applies to the ray evaluator only")
            elif kind == "ray":
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
            violations = steps.violations(t.user_attrs, self.budgets)
            if violations:
                infeasible.append({"trial": t.number, PRESET: TrialRecord.from_user_attrs(t.user_attrs).preset,
                                   "violations": violations})
        return SearchResult(
            study=self.config.study, storage=self.config.storage_url, trials=total, finished=counts.finished,
            complete=counts.complete, failed=counts.failed, new_trials=new_trials, wall_s=round(wall_s, 2),
            objectives=[o.name for o in self.objectives], targets=list(self.targets),
            front=front_rows(self.study), notes=list(self.notes), overhead_s=round(self.overhead_s, 4),
            infeasible=infeasible, accuracy_source=self.scorer.source,
            supernet=_supernet_summary(self.supernet_info),
            seconds_per_candidate=(round(sum(self._eval_seconds) / len(self._eval_seconds), 4)
                                   if self._eval_seconds else None),
            charged_s=round(self._charged, 2) if self._charged is not None else None,
        )


def _val_images(config: SearchConfig, data: Any) -> int:
    """How many validation images a supernet score reads (``val_size``, capped by the split)."""
    total = int(getattr(data, "val_size", 0) or 0)
    return min(config.supernet.val_size, total) if config.supernet.val_size else total


def _supernet_summary(info: Any) -> dict[str, Any] | None:
    if info is None:
        return None
    return {"path": str(info.path), "checksum": info.checksum, "method": info.method, "epochs": info.epochs,
            "dataset": info.dataset_name}


def run_search(config: SearchConfig, *, evaluator: Any = None, echo: Callable[[str], None] | None = None) -> SearchResult:
    """Run (or resume) the search ``config`` describes; see :class:`SearchDriver`."""
    return SearchDriver(config, evaluator=evaluator, echo=echo).run()
