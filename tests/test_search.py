"""The search driver on a real SQLite study: tiny space, 16x16 digits, a few training batches.

Latency is really measured (ONNX Runtime, 32x32 deploy input) and really estimated (guideline
model); trainings really run (SequentialEvaluator in-process; one test with Ray).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from evaluator.datasets import load_dataset
from evaluator.sequential import SequentialEvaluator
from experiments.config import load_config
from experiments.search import SearchError, run_search
from experiments.storage import StorageError, open_storage, owner_token
from search_space import SearchSpace
from conftest import TINY_SPACE

#: small, but holds the 0.5x preset
PRESET_SPACE = {"width_ranges": [[40, 48], [88, 96], [184, 192]], "depth_ranges": [[1, 4], [1, 8], [1, 4]],
                "stem_choices": [24], "conv5_choices": [1024]}


@pytest.fixture(autouse=True)
def home(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SHUFFLENAS_HOME", str(tmp_path_factory.getbasetemp() / "shufflenas-home"))


def tiny(tmp_path: Path, **overrides):
    options = {"out": str(tmp_path), "trials": 3, "workers": 1, "sampler": "random", "seed": 1,
               "targets": ["local-cpu", "paper-arm-sd810"], "deploy_input": 32, "deploy_classes": 10,
               "space": TINY_SPACE, "progress": False,
               "proxy": {"epochs": 1, "max_train_batches": 2, "batch_size": 32},
               "latency": {"measure_budget_s": 0.05}}
    options.update(overrides)
    return load_config(None, options)


def load(config) -> optuna.Study:
    return optuna.load_study(study_name=config.study, storage=config.storage_url)


def test_search_records_everything_and_resumes(tmp_path):
    config = tiny(tmp_path, trials=2)
    result = run_search(config)
    assert (result.finished, result.complete, result.new_trials) == (2, 2, 2)
    assert any("preset 0.5x lies outside the search space" in n for n in result.notes)
    assert result.front and all("accuracy" in row for row in result.front)
    study = load(config)
    trial = study.trials[0]
    attrs = trial.user_attrs
    for key in ("arch", "arch_id", "params", "flops", "mac", "kernels", "accuracy", "train_time_s", "images_per_s",
                "curve", "latency_ms:local-cpu", "latency_ms:paper-arm-sd810", "proxy_key"):
        assert key in attrs, key
    assert attrs["latency_source:local-cpu"] == "measured"
    assert attrs["latency_source:paper-arm-sd810"] == "estimate:guideline"
    assert trial.values == [attrs["accuracy"], attrs["latency_ms:local-cpu"]]
    before = {t.number: (t.values, t.user_attrs["arch"]) for t in study.trials}

    resumed = run_search(tiny(tmp_path, trials=3))
    assert (resumed.finished, resumed.new_trials) == (3, 1)
    study = load(config)
    assert len(study.trials) == 3
    assert {t.number: (t.values, t.user_attrs["arch"]) for t in study.trials[:2]} == before

    again = run_search(tiny(tmp_path, trials=3))  # nothing left to do: no trial re-evaluated
    assert again.new_trials == 0 and len(load(config).trials) == 3


def test_presets_seeded_once_and_reused(tmp_path):
    config = tiny(tmp_path, space=PRESET_SPACE, presets=["0.5x"], trials=2)
    run_search(config)
    study = load(config)
    assert study.trials[0].user_attrs["preset"] == "0.5x"
    assert study.trials[0].params == {"w2": 48, "d2": 4, "r2": 0.5, "k2": 3, "w3": 96, "d3": 8, "r3": 0.5, "k3": 3,
                                      "w4": 192, "d4": 4, "r4": 0.5, "k4": 3, "stem": 24, "conv5": 1024,
                                      "se": False, "extra_dw": False}
    run_search(tiny(tmp_path, space=PRESET_SPACE, presets=["0.5x"], trials=3))
    study = load(config)
    assert [t.user_attrs.get("preset") for t in study.trials].count("0.5x") == 1
    # the same architecture asked again is not retrained: its accuracy is reused
    study.enqueue_trial(study.trials[0].params)
    run_search(tiny(tmp_path, space=PRESET_SPACE, presets=["0.5x"], trials=4))
    last = load(config).trials[-1]
    assert last.user_attrs["reused_from"] == 0
    assert last.values == study.trials[0].values


def test_a_repeat_within_one_run_reuses_the_trial_told_earlier_in_that_run(tmp_path):
    """The reuse index learns of this run's trials as they are told (not by reading the study)."""
    run_search(tiny(tmp_path, space=PRESET_SPACE, presets=[], trials=1))
    study = load(tiny(tmp_path))
    params = {"w2": 48, "d2": 4, "r2": 0.5, "k2": 3, "w3": 96, "d3": 8, "r3": 0.5, "k3": 3, "w4": 192, "d4": 4,
              "r4": 0.5, "k4": 3, "stem": 24, "conv5": 1024, "se": False, "extra_dw": False}  # 0.5x
    assert study.trials[0].params != params
    study.enqueue_trial(params)
    study.enqueue_trial(params)
    run_search(tiny(tmp_path, space=PRESET_SPACE, presets=[], trials=3))
    _, first, second = load(tiny(tmp_path)).trials
    assert first.params == second.params == params
    assert "reused_from" not in first.user_attrs and second.user_attrs["reused_from"] == first.number
    assert second.values == first.values


def test_budget_is_an_optuna_constraint(tmp_path):
    config = tiny(tmp_path, trials=2, budgets={"mac": 1.0, "paper-arm-sd810": 1e9})
    result = run_search(config)
    study = load(config)
    for trial in study.trials:
        assert trial.constraints["budget:mac"] > 0          # no network moves < 1 element
        assert trial.constraints["budget:latency:paper-arm-sd810"] < 0
    assert result.front == []  # nothing feasible, nothing on the front


def test_stale_trials_failed_and_requeued_but_live_owners_kept(tmp_path):
    config = tiny(tmp_path, trials=1)
    run_search(config)
    study = load(config)
    space = SearchSpace.from_dict(TINY_SPACE)
    dead_params = {"w2": 8, "d2": 1, "r2": 0.5, "k2": 3, "w3": 16, "d3": 1, "r3": 0.5, "k3": 3, "w4": 32, "d4": 1,
                   "r4": 0.5, "k4": 3, "stem": 8, "conv5": 64, "se": False, "extra_dw": False}
    study.enqueue_trial(dead_params)
    stale = study.ask()  # a driver that died mid-trial: RUNNING, owner process gone
    space.suggest(stale)
    stale.set_user_attr("owner", f"{socket.gethostname()}:999999999:1")
    live = study.ask()   # a driver still working on its trial
    space.suggest(live)
    live.set_user_attr("owner", owner_token(os.getppid()))  # pytest's parent: alive

    result = run_search(tiny(tmp_path, trials=3))
    study = load(config)
    states = {t.number: t.state for t in study.trials}
    assert states[stale.number] == TrialState.FAIL
    assert study.trials[stale.number].user_attrs["requeued"] is True
    assert "interrupted" in study.trials[stale.number].user_attrs["fail_reason"]
    assert states[live.number] == TrialState.RUNNING  # another driver's trial is left alone
    rerun = [t for t in study.trials if t.number > live.number and t.params == dead_params]
    assert rerun and rerun[0].state == TrialState.COMPLETE
    assert any("re-queued 1 trial" in n for n in result.notes)
    # finished = 1 + the re-run; the live trial counts as running, so the driver stopped at 3 total
    assert result.finished == 2


def test_failing_candidate_fails_its_trial_and_the_study_goes_on(tmp_path):
    data = load_dataset("digits", None, 16, 0)
    calls = []

    def flaky(arch, data, config):
        from evaluator.proxy import train_proxy

        calls.append(arch)
        if len(calls) == 2:
            raise RuntimeError("loss is NaN at step 3")
        return train_proxy(arch, data, config)

    config = tiny(tmp_path, trials=3)
    result = run_search(config, evaluator=SequentialEvaluator(data, train_fn=flaky))
    study = load(config)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and "loss is NaN" in failed[0].user_attrs["fail_reason"]
    assert (result.finished, result.complete, result.failed) == (3, 2, 1)


def test_incompatible_resume_is_refused(tmp_path):
    run_search(tiny(tmp_path, trials=1))
    with pytest.raises(SearchError, match="was created with objectives"):
        run_search(tiny(tmp_path, trials=2, objectives=["accuracy", "mac"]))


def test_storage_errors_are_one_line(tmp_path):
    with pytest.raises(StorageError, match="cannot reach storage"):
        open_storage("postgresql://nobody@127.0.0.1:1/x")
    with pytest.raises(StorageError, match="no study storage at"):
        open_storage(f"sqlite:///{tmp_path}/missing.db", create=False)
    journal = open_storage(f"journal:///{tmp_path}/deep/er/study.log")
    assert (tmp_path / "deep" / "er").is_dir() and journal.get_all_studies() == []


def test_journal_storage_search(tmp_path):
    config = tiny(tmp_path, trials=1, storage=f"journal:///{tmp_path}/study.log")
    assert run_search(config).complete == 1
    assert (tmp_path / "study.log").is_file()


def test_ray_evaluator_search(tmp_path, ray_session):
    from evaluator import make_evaluator

    data = load_dataset("digits", None, 16, 0)
    evaluator = make_evaluator("ray", data, max_in_flight=2)
    try:
        config = tiny(tmp_path, trials=2, workers=2, evaluator="ray")
        result = run_search(config, evaluator=evaluator)
    finally:
        evaluator.close()
    assert result.complete == 2
    pids = {t.user_attrs["worker_pid"] for t in load(config).trials}
    assert os.getpid() not in pids


# -- the command ------------------------------------------------------------------------------------
def cli_env(tmp_path: Path) -> dict:
    return {"SHUFFLENAS_HOME": os.environ["SHUFFLENAS_HOME"]}


def recipe(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(f'''out = "{tmp_path / 'out'}"
workers = 1
trials = 2
sampler = "random"
targets = ["local-cpu", "paper-gpu-1080ti"]
deploy_input = 32
deploy_classes = 10
presets = []
progress = false
{extra}
[proxy]
epochs = 1
max_train_batches = 2
batch_size = 32
[latency]
measure_budget_s = 0.05
[space]
width_ranges = [[8, 16], [16, 32], [32, 48]]
depth_ranges = [[1, 2], [1, 2], [1, 2]]
stem_choices = [8]
conv5_choices = [64]
''')
    return path


def test_cli_search_json_then_table_in_a_new_directory(cli_here, tmp_path):
    config = recipe(tmp_path)
    db = tmp_path / "a" / "b" / "s.db"  # missing directories are created
    proc = cli_here("search", "--config", str(config), "--storage", f"sqlite:///{db}", "--json", env=cli_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["complete"] == 2 and data["targets"] == ["local-cpu", "paper-gpu-1080ti"]
    assert db.is_file()
    assert len(load_config(config, {"storage": f"sqlite:///{db}"}).storage_url) > 0


@pytest.mark.parametrize("args, message", [
    (["--trials", "0"], "trials must be > 0"),
    (["--trials", "-3"], "trials must be > 0"),
    (["--storage", "postgresql://nobody@127.0.0.1:1/x"], "cannot reach storage postgresql://nobody@127.0.0.1:1/x"),
    (["--ray-address", "127.0.0.1:1", "--workers", "2"], "127.0.0.1:1"),
    (["--config", "/nonexistent/x.toml"], "config file not found"),
])
def test_cli_bad_input_one_line_exit_2(cli, cli_here, tmp_path, args, message):
    argv = ["search", *args] if "--config" in args else ["search", "--config", str(recipe(tmp_path)), *args]
    # a failed connection to a Ray cluster is tried in its own process: this one shares a local Ray instance
    run = cli if "--ray-address" in args else cli_here
    proc = run(*argv, env=cli_env(tmp_path))
    assert proc.returncode == 2
    assert message in proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1


def test_cli_unknown_config_key_named(cli_here, tmp_path):
    proc = cli_here("search", "--config", str(recipe(tmp_path, "epochz = 3")), env=cli_env(tmp_path))
    assert proc.returncode == 2 and "'epochz'" in proc.stderr
