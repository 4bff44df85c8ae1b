"""The driver's per-trial bookkeeping at scale: one transaction for a trial's attrs, WAL on a search's
SQLite file, counts and front kept as trials finish, the reuse index, NSGA-II's population.

Everything on real SQLite (and journal) storages; behaviour only, never timing (the timings are
``benchmarks/search_overhead.py``'s).
"""

from __future__ import annotations

import random
import shutil
import sqlite3
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from experiments.report import front_numbers
from experiments.samplers import make_sampler, nsga2_population
from experiments.storage import checkpoint, open_storage, write_trial_attrs, writer_lock
from experiments.study_handling import StudyTally, count_trials
from experiments.trial_record import FAILURE_KIND, REQUEUED

optuna.logging.set_verbosity(optuna.logging.WARNING)
LEGACY = Path(__file__).parent / "data" / "legacy_study.db"

ATTRS = {"arch": "stem24_w116-232-464_d4-8-4", "arch_id": "abc123", "accuracy": 0.75, "curve": [0.5, 0.75],
         "proxy_reason": None, "latency_ms:paper-arm-sd810": 12.5, "latency_source:paper-arm-sd810": "estimate:lut",
         "cached": False, "nested": {"a": [1, 2, {"b": None}]}, "unicode": "1.0x \u00d7 224"}


def _journal_mode(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA journal_mode").fetchone()[0]


def _study(url: str, name: str = "s", directions=("maximize", "minimize")) -> optuna.Study:
    return optuna.create_study(study_name=name, storage=open_storage(url), directions=list(directions))


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_batched_attrs_land_as_one_by_one_writes_would(kind, tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}" if kind == "sqlite" else f"journal:///{tmp_path / 'study.log'}"
    study = _study(url)
    batched, single = study.ask(), study.ask()
    constraints = {"budget:latency:paper-arm-sd810": 2.5, "budget:mac": -1.0}
    write_trial_attrs(study, batched, ATTRS, constraints)
    for key, value in ATTRS.items():
        single.set_user_attr(key, value)
    for key, value in constraints.items():
        single.set_constraint(key, value)
    assert batched.user_attrs == ATTRS  # the live trial sees them too
    study.tell(batched, [0.75, 12.5])
    study.tell(single, [0.75, 12.5])
    # a fresh reader (another process would see the same file) finds identical records
    a, b = optuna.load_study(study_name="s", storage=open_storage(url, create=False)).trials
    assert a.user_attrs == b.user_attrs == ATTRS
    assert a.system_attrs == b.system_attrs and a.constraints == b.constraints == constraints


def test_a_second_batch_replaces_values_and_a_finished_trial_takes_none(tmp_path):
    study = _study(f"sqlite:///{tmp_path / 'study.db'}")
    trial = study.ask()
    write_trial_attrs(study, trial, {"accuracy": 0.1, "arch": "x"})
    write_trial_attrs(study, trial, {"accuracy": 0.2})
    study.tell(trial, [0.2, 1.0])
    with pytest.raises(RuntimeError):  # Optuna's UpdateFinishedTrialError
        write_trial_attrs(study, trial, {"accuracy": 0.9, "late": 1})
    stored = optuna.load_study(study_name="s", storage=open_storage(f"sqlite:///{tmp_path / 'study.db'}")).trials[0]
    assert stored.user_attrs == {"accuracy": 0.2, "arch": "x"}  # nothing of the refused batch landed
    with pytest.raises(ValueError):
        write_trial_attrs(study, study.ask(), {}, {"budget:mac": float("nan")})


def test_a_search_file_runs_in_wal_and_is_folded_back_when_the_writer_lets_go(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    with writer_lock(url):
        study = _study(url)
        for _ in range(3):
            trial = study.ask()
            write_trial_attrs(study, trial, ATTRS)
            study.tell(trial, [0.5, 1.0])
        assert _journal_mode(tmp_path / "study.db") == "wal"
    wal = tmp_path / "study.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0  # every trial is in the .db itself again
    copy = tmp_path / "copy.db"
    shutil.copy(tmp_path / "study.db", copy)  # the file alone is complete
    trials = optuna.load_study(study_name="s", storage=open_storage(f"sqlite:///{copy}", create=False)).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3 and trials[2].user_attrs == ATTRS
    checkpoint(url)  # nothing to fold: a no-op
    checkpoint(f"journal:///{tmp_path / 'x.log'}")


def test_readers_leave_an_earlier_study_file_as_it_was(tmp_path):
    """A report (create=False) does not switch a file of an earlier version to WAL; a search on it does."""
    path = tmp_path / "legacy.db"
    shutil.copy(LEGACY, path)
    before = _journal_mode(path)
    storage = open_storage(f"sqlite:///{path}", create=False)
    name = storage.get_all_studies()[0].study_name
    n = len(optuna.load_study(study_name=name, storage=storage).trials)
    assert _journal_mode(path) == before != "wal"
    storage = open_storage(f"sqlite:///{path}", create=True)
    assert len(optuna.load_study(study_name=name, storage=storage).trials) == n
    assert _journal_mode(path) == "wal"


def _random_trials(study: optuna.Study, n: int, rng: random.Random, constrained: bool) -> None:
    """COMPLETE trials (ties, infeasible ones), counted and uncounted FAILs, one left RUNNING per call."""
    for _ in range(n):
        trial = study.ask()
        roll = rng.random()
        if roll < 0.15:
            kind = rng.choice([{}, {REQUEUED: True}, {FAILURE_KIND: "environment"}, {FAILURE_KIND: "candidate"}])
            write_trial_attrs(study, trial, {"fail_reason": "x", **kind})
            study.tell(trial, state=TrialState.FAIL)
            continue
        values = [round(rng.random(), 1), round(rng.random() * 10, 0)]  # coarse: ties and duplicates
        write_trial_attrs(study, trial, {"accuracy": values[0]},
                          {"budget:x": rng.choice([-1.0, 0.0, 1.0])} if constrained else {})
        study.tell(trial, values)
    study.ask()  # RUNNING


def _old_counts(study: optuna.Study) -> tuple[int, int, int, int]:
    complete = failed = running = 0
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.COMPLETE:
            complete += 1
        elif t.state == TrialState.RUNNING:
            running += 1
        elif t.state == TrialState.FAIL and not t.user_attrs.get(REQUEUED) \
                and t.user_attrs.get(FAILURE_KIND) != "environment":
            failed += 1
    return complete + failed, complete, failed, running


@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("directions", [("maximize", "minimize"), ("minimize", "minimize")])
def test_tally_keeps_the_counts_and_front_of_a_full_rescan(tmp_path, constrained, directions):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = _study(url, directions=directions)
    tally = StudyTally(study)
    rng = random.Random(7)
    for step in range(6):
        _random_trials(study, rng.randint(0, 25), rng, constrained)
        counts = tally.refresh()
        assert (counts.finished, counts.complete, counts.failed, counts.running) == _old_counts(study), step
        assert tally.front_numbers() == front_numbers(study), step
        assert tally.front_size == len(front_numbers(study))
    # a second driver's tally on the same file (resume) starts from the stored trials and agrees
    again = StudyTally(optuna.load_study(study_name="s", storage=open_storage(url)))
    assert again.refresh() == count_trials(study) == tally.counts
    assert again.front_numbers() == tally.front_numbers()


def test_told_trials_observed_between_reads_count_once_and_reach_the_reuse_index_once(tmp_path):
    """The driver counts a trial it tells from ``tell``'s return, and the reuse index learns of this
    study's COMPLETE trials only through the tally: mixing that with reads must match a full rescan."""
    study = _study(f"sqlite:///{tmp_path / 'study.db'}")
    shown: list[int] = []
    tally = StudyTally(study, on_complete=lambda t: shown.append(t.number))
    rng = random.Random(3)
    for step in range(5):
        _random_trials(study, rng.randint(0, 6), rng, constrained=True)  # written by "another driver"
        for _ in range(rng.randint(1, 4)):  # told by this one, observed from tell's return
            trial = study.ask()
            write_trial_attrs(study, trial, {"accuracy": 0.5})
            if rng.random() < 0.3:
                counts = tally.observe(study.tell(trial, state=TrialState.FAIL))
            else:
                counts = tally.observe(study.tell(trial, [round(rng.random(), 1), float(rng.randint(0, 9))]))
            assert counts.finished == tally.counts.finished
        if step % 2:
            counts = tally.refresh()
            assert (counts.finished, counts.complete, counts.failed, counts.running) == _old_counts(study), step
    counts = tally.refresh()
    assert (counts.finished, counts.complete, counts.failed, counts.running) == _old_counts(study)
    assert tally.front_numbers() == front_numbers(study)
    complete = [t.number for t in study.get_trials(states=(TrialState.COMPLETE,))]
    assert sorted(shown) == complete  # each COMPLETE trial once, none twice, no FAIL


def test_tally_counts_a_legacy_study_as_before(tmp_path):
    path = tmp_path / "legacy.db"
    shutil.copy(LEGACY, path)
    storage = open_storage(f"sqlite:///{path}", create=False)
    for summary in storage.get_all_studies():
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        tally = StudyTally(study)
        counts = tally.refresh()
        assert (counts.finished, counts.complete, counts.failed, counts.running) == _old_counts(study)
        assert tally.front_numbers() == front_numbers(study)


@pytest.mark.parametrize("trials", [1, 8, 24, 40])
def test_small_budgets_keep_their_nsga2_population(trials):
    assert nsga2_population(trials) == max(4, min(50, trials // 4))


def test_nsga2_population_grows_with_the_budget_to_a_cap():
    sizes = [nsga2_population(t) for t in range(1, 5000, 7)]
    assert sizes == sorted(sizes) and max(sizes) == 100 and min(sizes) == 4
    assert nsga2_population(1000) == 100 and nsga2_population(300) == 30
    sampler = make_sampler("nsga2", 0, 1000, 2)
    assert isinstance(sampler, optuna.samplers.NSGAIISampler) and sampler._population_size == 100


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_new_trial_has_its_owner_from_its_first_write(kind, tmp_path):
    from experiments.trial_steps import owned_trial

    url = f"sqlite:///{tmp_path / 'study.db'}" if kind == "sqlite" else f"journal:///{tmp_path / 'study.log'}"
    study = _study(url)
    study.enqueue_trial({"x": 1}, user_attrs={"preset": "p"})
    queued, fresh = owned_trial(study, "host:1:2"), owned_trial(study, "host:1:2")
    assert queued.number == 0 and queued.params == {} and fresh.number == 1
    assert queued.suggest_int("x", 0, 3) == 1  # the queue's parameters, as study.ask gives them
    fresh.suggest_int("x", 0, 3)
    stored = optuna.load_study(study_name="s", storage=open_storage(url, create=False)).trials
    assert [t.state for t in stored] == [TrialState.RUNNING] * 2
    assert stored[0].user_attrs == {"preset": "p", "owner": "host:1:2"}
    assert stored[1].user_attrs == {"owner": "host:1:2"} and stored[1].datetime_start is not None
    study.tell(fresh, [0.5, 1.0])


def test_a_trial_asked_beyond_the_target_is_given_back(tmp_path):
    """Two drivers ask for a journal study's last place at the same moment: the second-numbered trial is
    failed as re-queued (it does not count, nothing runs) and a queued one goes back to the queue."""
    from experiments.config import SearchConfig
    from experiments.study_handling import places_taken_before
    from experiments.trial_steps import ask, owned_trial
    from search_space import SearchSpace

    url = f"journal:///{tmp_path / 'study.log'}"
    first = _study(url)
    second = optuna.load_study(study_name="s", storage=open_storage(url, create=False))  # another process
    space, config = SearchSpace(), SearchConfig()
    for _ in range(2):
        done = ask(first, space, config, "host:1:2", "proxy", target=3)
        first.tell(done.trial, [0.5, 1.0])
    taken = owned_trial(first, "host:1:2")  # the last place, not yet told
    assert places_taken_before(second, taken.number + 1) == 3
    assert ask(second, space, config, "host:3:4", "proxy", target=3) is None
    surplus = second.trials[-1]
    assert surplus.state == TrialState.FAIL and surplus.user_attrs[REQUEUED] and surplus.number == taken.number + 1
    assert StudyTally(second).refresh().finished == 2  # the surplus trial does not count

    # a queued trial (a preset) asked beyond the target is queued again, with its attributes
    first.enqueue_trial({"stem": 24}, user_attrs={"preset": "p"})
    assert ask(second, space, config, "host:3:4", "proxy", target=3) is None
    waiting = [t for t in second.get_trials(states=(TrialState.WAITING,))]
    assert len(waiting) == 1 and waiting[0].system_attrs["fixed_params"] == {"stem": 24}
    assert waiting[0].user_attrs == {"preset": "p"}
    # with the target raised, the queued trial is taken and kept
    item = ask(second, space, config, "host:3:4", "proxy", target=6)
    assert item is not None and item.trial.number == waiting[0].number
