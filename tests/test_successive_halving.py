"""Multi-objective successive halving: the promotion rules, the ``[fidelity]`` table, and real
searches on SQLite (rungs stored on every trial, promotions, kill -9 and resume without retraining)."""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import TINY_SPACE
from experiments.config import ConfigError, load_config
from experiments.search import SearchError, run_search
from experiments.successive_halving import (Fidelity, RungResult, band_order, keep_count, next_promotion,
                                            nondominated_order)
from test_crash_recovery import CONFIG as CRASH_CONFIG
from test_crash_recovery import Traced


@pytest.fixture(autouse=True)
def home(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SHUFFLENAS_HOME", str(tmp_path_factory.getbasetemp() / "shufflenas-home"))


# -- the rules ---------------------------------------------------------------------------------------
def r(number: int, accuracy: float, latency: float, flops: float = 0.0) -> RungResult:
    return RungResult(number, accuracy, (latency,), flops)


def test_nondominated_order_puts_fronts_first_then_spread():
    results = [r(0, 0.9, 10), r(1, 0.8, 5), r(2, 0.7, 8), r(3, 0.85, 7), r(4, 0.6, 9)]
    order = [x.number for x in nondominated_order(results)]
    assert set(order[:3]) == {0, 1, 3}      # the front: nothing beats them on both
    assert order[3] == 2 and order[4] == 4  # 2 is dominated by 3 only; 4 by almost everything
    assert order[:2] in ([0, 1], [1, 0])    # the front's ends (infinite crowding) come before its middle


def test_bands_keep_the_best_of_each_size_where_plain_sorting_keeps_the_small():
    # at a short rung the large networks (high FLOPs, slow) score lower: all dominated
    small = [r(i, 0.80 + i / 100, 1.0 + i / 10, flops=1e6 + i) for i in range(3)]
    large = [r(10 + i, 0.70 + i / 100, 5.0 + i / 10, flops=1e8 + i) for i in range(3)]
    plain = nondominated_order(small + large)[:2]
    assert all(x.flops < 1e7 for x in plain)
    banded = band_order(small + large, bands=2)[:2]
    assert {x.flops > 1e7 for x in banded} == {True, False}
    assert banded[0].number == 12  # the largest band goes first, its most accurate member


def test_next_promotion_keeps_one_in_eta_and_serves_higher_rungs_first():
    fidelity = Fidelity(rungs=(1, 3, 9), eta=3, promotion="nondominated")
    pool = {0: [r(n, 0.5 + n / 100, 1.0) for n in range(6)]}
    assert keep_count(6, 3) == 2
    waiting = {n: 0 for n in range(6)}
    assert next_promotion(pool, waiting, fidelity) == (5, 1)
    waiting.pop(5)  # promoted: now training rung 1
    assert next_promotion(pool, waiting, fidelity) == (4, 1)
    waiting.pop(4)
    assert next_promotion(pool, waiting, fidelity) is None   # only 2 of 6 go on
    pool[1] = [r(5, 0.9, 1.0), r(4, 0.8, 1.0), r(3, 0.7, 1.0)]
    assert next_promotion(pool, {5: 1, 4: 1, 0: 0}, fidelity) == (5, 2)
    assert next_promotion({0: pool[0][:2]}, {0: 0, 1: 0}, fidelity) is None  # fewer than eta: nobody yet


def test_no_more_than_one_in_eta_goes_on_when_later_arrivals_reorder_a_rung():
    fidelity = Fidelity(rungs=(1, 3), eta=3, promotion="nondominated")
    pool = {0: [r(0, 0.5, 1.0), r(1, 0.4, 1.0), r(2, 0.3, 1.0)]}
    assert next_promotion(pool, {0: 0, 1: 0, 2: 0}, fidelity) == (0, 1)
    pool[0] += [r(3, 0.9, 1.0), r(4, 0.8, 1.0)]          # better ones arrive: trial 0 left the top 1
    assert next_promotion(pool, {1: 0, 2: 0, 3: 0, 4: 0}, fidelity, in_flight={0: 1}) is None
    pool[0].append(r(5, 0.1, 1.0))                         # n = 6: a second place
    assert next_promotion(pool, {1: 0, 2: 0, 3: 0, 4: 0, 5: 0}, fidelity, in_flight={0: 1}) == (3, 1)


# -- the [fidelity] table ------------------------------------------------------------------------------
@pytest.mark.parametrize("table, message", [
    ({"rungs": [3, 1]}, "fidelity.rungs must increase"),
    ({"rungs": [1, 1]}, "fidelity.rungs must increase"),
    ({"rungs": [1, 3, 12]}, "beyond the epoch budget (proxy.epochs = 9)"),
    ({"rungs": [2]}, "at least two rungs"),
    ({"rungs": [0, 3]}, "whole numbers of epochs >= 1"),
    ({"rungs": ["1", 3]}, "fidelity.rungs must be a list of integers"),
    ({"rungs": [1, 3], "eta": 1}, "fidelity.eta must be an integer >= 2"),
    ({"rungs": [1, 3], "promotion": "best"}, "fidelity.promotion must be one of bands, nondominated"),
    ({"rungs": [1, 3], "bands": 0}, "fidelity.bands must be an integer >= 1"),
    ({"rung": [1, 3]}, "unknown option(s) 'fidelity.rung'"),
])
def test_bad_fidelity_tables_are_one_line(table, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, {"proxy": {"epochs": 9}, "fidelity": table})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_supernet_with_rungs_refused():
    with pytest.raises(ConfigError, match="a supernet scores without training"):
        load_config(None, {"proxy": {"epochs": 3}, "fidelity": {"rungs": [1, 3]}, "evaluator": "supernet",
                           "supernet": {"checkpoint": "x"}})


def test_cli_bad_rungs_exit_2_and_nothing_written(cli_here, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[proxy]\nepochs = 3\n[fidelity]\nrungs = [1, 9]\n")
    out = tmp_path / "out"
    run = cli_here("search", "--config", config, "--out", out)
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0 and "beyond the epoch budget" in run.stderr
    assert not out.exists()


# -- real searches ---------------------------------------------------------------------------------------
def tiny(tmp_path: Path, **overrides):
    options = {"out": str(tmp_path), "trials": 6, "workers": 1, "sampler": "random", "seed": 1, "presets": [],
               "targets": ["local-cpu", "paper-arm-sd810"], "deploy_input": 32, "deploy_classes": 10,
               "space": TINY_SPACE, "progress": False,
               "proxy": {"epochs": 2, "max_train_batches": 2, "batch_size": 32},
               "latency": {"measure_budget_s": 0.05}, "fidelity": {"rungs": [1, 2], "eta": 3}}
    options.update(overrides)
    return load_config(None, options)


def test_search_stores_every_rung_and_promotes_one_in_eta(tmp_path):
    lines: list[str] = []
    config = tiny(tmp_path)
    result = run_search(config, echo=lines.append)
    assert (result.finished, result.complete) == (6, 6)
    study = optuna.load_study(study_name=config.study, storage=config.storage_url)
    trials = study.trials
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert all("rung:1" in t.user_attrs for t in trials)
    promoted = [t for t in trials if t.user_attrs["rung"] == 2]
    assert len(promoted) == 2  # floor(6 / 3) reached the last rung
    for t in trials:  # each trial carries its highest rung's accuracy, trained for that many epochs
        rung = t.user_attrs["rung"]
        assert t.values[0] == t.user_attrs[f"rung:{rung}"] == t.user_attrs["accuracy"]
        assert t.user_attrs["epochs_run"] == rung
    assert sum("promoted: rung 1 -> 2 epochs" in line for line in lines) == 2
    from experiments.report import front_numbers

    front = front_numbers(study)  # only trials of the highest rung compete: 1 epoch is not 2
    assert front and all(trials[n].user_attrs["rung"] == 2 for n in front)
    assert any("successive halving: rungs [1, 2]" in n for n in result.notes)


def test_resume_with_other_rungs_refused(tmp_path):
    run_search(tiny(tmp_path, trials=3))
    with pytest.raises(SearchError, match=r"created with \[fidelity\] rungs \[1, 2\], not no \[fidelity\] rungs"):
        run_search(tiny(tmp_path, trials=4, fidelity={}))


#: the crash test's search (tiny space, real SQLite, one worker), with two rungs over 6 trials
CONFIG = (CRASH_CONFIG.replace("trials = 3", "trials = 6").replace("epochs = 1", "epochs = 2")
          + "\n[fidelity]\nrungs = [1, 2]\n")


def test_sigkill_between_rungs_resumes_without_retraining(tmp_path):
    """Killed once two trials wait at rung 1: the rerun takes their rung-1 accuracy back (same
    parameters, same value) instead of training them again, and finishes the search."""
    (tmp_path / "c.toml").write_text(CONFIG)
    env = {**os.environ, "SHUFFLENAS_TRACE": "1", "SHUFFLENAS_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    args = ["search", "--config", str(tmp_path / "c.toml"), "--out", str(tmp_path / "out"), "--study", "sha"]
    Traced(args, env).kill_at("rung", 2)
    url = f"sqlite:///{tmp_path / 'out' / 'study.db'}"
    before = optuna.load_study(study_name="sha", storage=url).trials
    waiting = {t.number: (t.params, t.user_attrs["rung:1"]) for t in before if "rung:1" in t.user_attrs}
    assert len(waiting) == 2 and all(t.state == TrialState.RUNNING for t in before if t.number in waiting)

    rerun = Traced(args, env)
    rerun.finish()
    trials = optuna.load_study(study_name="sha", storage=url).trials
    for number, (params, accuracy) in waiting.items():
        assert trials[number].state == TrialState.FAIL and trials[number].user_attrs["requeued"] is True
        again = [t for t in trials if t.number > number and t.params == params and t.state == TrialState.COMPLETE]
        assert again and again[0].user_attrs["rung:1"] == accuracy   # not retrained: the same value
    adopted = [int(line.split()[2]) for line in rerun.seen if line.startswith("trace: adopt")]
    assert len(adopted) == 2  # taken back at rung 1, not trained again
    trained = [int(line.split()[2]) for line in rerun.seen if line.startswith("trace: train")]
    assert not set(adopted) & set(trained) - {t.number for t in trials if t.user_attrs.get("rung") == 2}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 6 and sum(t.user_attrs["rung"] == 2 for t in complete) == 2


def test_a_compute_budget_stops_new_work_and_a_rerun_starts_none(tmp_path):
    """``budget_s``: once the study's trainings cost that many CPU-seconds nothing new starts (work in
    flight finishes, waiting trials are told); the study remembers its cost, so a rerun adds nothing."""
    from experiments.compute_charge import study_charge

    lines: list[str] = []
    config = tiny(tmp_path, trials=12, budget_s=1e-3)
    result = run_search(config, echo=lines.append)
    assert result.finished == 1 and result.charged_s is not None and result.charged_s > 0
    assert any("compute budget reached" in line for line in lines)
    study = optuna.load_study(study_name=config.study, storage=config.storage_url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE]
    assert study_charge(study).seconds == pytest.approx(result.charged_s, abs=0.01)
    again = run_search(config)
    assert again.new_trials == 0 and again.finished == 1
    grown = run_search(tiny(tmp_path, trials=3, budget_s=1e6))
    assert grown.finished == 3 and grown.charged_s > result.charged_s


@pytest.mark.parametrize("value", [0, -1, float("inf")])
def test_a_bad_budget_is_one_line(value):
    with pytest.raises(ConfigError, match="budget_s must be a finite number"):
        load_config(None, {"budget_s": value})


def test_cli_bad_budget_exit_2_and_nothing_written(cli_here, tmp_path):
    out = tmp_path / "out"
    run = cli_here("search", "--budget-s", "0", "--out", out)
    assert run.returncode == 2 and "budget_s must be a finite number" in run.stderr
    assert run.stderr.strip().count("\n") == 0 and not out.exists()


def test_the_running_charge_counts_copies_as_the_study_does(tmp_path):
    """A result copied from another study of the storage costs what it cost there, during the run as
    when the study's cost is re-counted: the driver's running figure equals ``study_charge``."""
    from experiments.compute_charge import study_charge

    run_search(tiny(tmp_path, study="first", trials=3, fidelity={}))
    second = tiny(tmp_path, study="second", trials=3, fidelity={}, budget_s=1e6)
    result = run_search(second)
    study = optuna.load_study(study_name="second", storage=second.storage_url)
    assert any(t.user_attrs.get("reused_from") is not None for t in study.trials)  # the same draws: copies
    assert result.charged_s == pytest.approx(study_charge(study).seconds, abs=0.01) and result.charged_s > 0
