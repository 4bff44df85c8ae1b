"""The search checks what it can before the study is touched, and keeps its bookkeeping honest.

Real SQLite studies in temporary folders, real data sets, real trainings and measurements. A bad
config must fail with one line and leave no storage, lock file or output folder behind.
"""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from evaluator.datasets import DatasetError, load_dataset
from evaluator.sequential import SequentialEvaluator
from experiments.config import ConfigError, load_config, load_configs
from experiments.failures import failure_kind
from experiments.search import EnvironmentStopError, SearchDriver, SearchResult, proxy_key, run_search
from search_space.errors import ShufflenasError
from conftest import TINY_SPACE

#: small, but holds the 0.5x preset
PRESET_SPACE = {"width_ranges": [[40, 48], [88, 96], [184, 192]], "depth_ranges": [[1, 4], [1, 8], [1, 4]],
                "stem_choices": [24], "conv5_choices": [1024]}


@pytest.fixture(autouse=True)
def home(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SHUFFLENAS_HOME", str(tmp_path_factory.getbasetemp() / "shufflenas-home"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def tiny(out: Path, **overrides):
    options = {"out": str(out), "trials": 2, "workers": 1, "sampler": "random", "seed": 1, "presets": [],
               "targets": ["local-cpu", "paper-arm-sd810"], "deploy_input": 32, "deploy_classes": 10,
               "space": TINY_SPACE, "progress": False,
               "proxy": {"epochs": 1, "max_train_batches": 2, "batch_size": 32},
               "latency": {"measure_budget_s": 0.05}}
    for key, value in overrides.items():
        if key in ("proxy", "latency") and isinstance(value, dict):
            options[key] = {**options[key], **value}
        else:
            options[key] = value
    return load_config(None, options)


def load(config) -> optuna.Study:
    return optuna.load_study(study_name=config.study, storage=config.storage_url)


def one_line_exit_2(proc) -> None:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr


# -- seeds ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [-1, 2**32, 99999999999999])
def test_seed_out_of_range_is_named(tmp_path, seed):
    path = tmp_path / "c.toml"
    path.write_text(f"seed = {seed}\n")
    with pytest.raises(ConfigError, match=f"seed must be between 0 and 4294967295, got {seed}"):
        load_configs(path)


def test_cli_seed_flag_out_of_range(cli_here, tmp_path):
    for seed in ("4294967296", "-1"):
        proc = cli_here("search", "--seed", seed, "--out", str(tmp_path / "out"), cwd=tmp_path)
        one_line_exit_2(proc)
        assert "seed must be between 0 and 4294967295" in proc.stderr and "proxy" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_resume_seed_near_the_limit_stays_valid(tmp_path):
    first = run_search(tiny(tmp_path / "out", seed=2**32 - 2, trials=1))
    assert first.complete == 1
    resumed = run_search(tiny(tmp_path / "out", seed=2**32 - 2, trials=2))  # seed + 1 trial so far = 2**32 - 1
    assert (resumed.finished, resumed.new_trials) == (2, 1)
    third = run_search(tiny(tmp_path / "out", seed=2**32 - 2, trials=3))    # wraps to 0
    assert (third.finished, third.new_trials) == (3, 1)


# -- nothing is created when a check fails ----------------------------------------------------------
def _imagefolder(root: Path, classes: int, corrupt: bool = False) -> Path:
    from PIL import Image

    for c in range(classes):
        folder = root / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(4):
            path = folder / f"{i}.png"
            if corrupt and i == 3:
                path.write_bytes(b"not a png at all")
            else:
                Image.new("RGB", (8, 8), (40 * c, 10 * i, 0)).save(path)
    return root


BAD_PROXY = {
    "unknown data set": ({"dataset": "imagenet-22k"}, "unknown data set"),
    "missing root": ({"dataset": "imagefolder", "data_root": "{tmp}/nope"}, "does not exist"),
    "one class": ({"dataset": "imagefolder", "data_root": "{one}"}, "at least 2 classes"),
    "corrupt image": ({"dataset": "imagefolder", "data_root": "{corrupt}"}, "cannot read image"),
    "batch larger than the data": ({"batch_size": 100000}, "larger than the digits training split"),
    "input too large for memory": ({"input_size": 100000}, "memory"),
    "limit too small": ({"limit": 2}, "limit must be >= 4"),
}


@pytest.mark.parametrize("case", sorted(BAD_PROXY))
def test_bad_proxy_setup_fails_before_anything_is_written(tmp_path, case):
    data = tmp_path / "data"
    one, corrupt = _imagefolder(data / "one", 1), _imagefolder(data / "corrupt", 2, corrupt=True)
    proxy, message = BAD_PROXY[case]
    proxy = {k: (v.format(tmp=tmp_path, one=one, corrupt=corrupt) if isinstance(v, str) else v)
             for k, v in proxy.items()}
    out = tmp_path / "out"
    with pytest.raises(ShufflenasError, match=message) as info:
        run_search(tiny(out, proxy=proxy, presets=["0.5x"]))
    assert "\n" not in str(info.value)
    assert not out.exists()


@pytest.mark.parametrize("overrides, message", [
    ({"latency": {"estimate_model": "magic"}}, "unknown latency.estimate_model 'magic'"),
    ({"targets": ["local-cpu", "rpi4"]}, "--ray-address"),
])
def test_bad_latency_setup_fails_before_anything_is_written(tmp_path, overrides, message):
    ray = pytest.importorskip("ray")
    if overrides.get("targets") and ray.is_initialized():
        pytest.skip("a Ray session of this test process reaches every target")
    out = tmp_path / "out"
    with pytest.raises(ShufflenasError, match=message):
        run_search(tiny(out, **overrides))
    assert not out.exists()


def test_cuda_device_without_cuda_fails_before_anything_is_written(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "out"
    with pytest.raises(ShufflenasError, match="no usable CUDA device"):
        run_search(tiny(out, proxy={"device": "cuda"}))
    assert not out.exists()


def test_cli_bad_configs_leave_the_folder_empty(cli, cli_here, tmp_path):
    """Through the command: one line, exit 2, and the folder holds only what was there before."""
    (tmp_path / "remote.toml").write_text('targets = ["local-cpu", "rpi4"]\nworkers = 2\nout = "run"\n')
    (tmp_path / "big.toml").write_text('out = "run"\nworkers = 2\n[proxy]\nbatch_size = 100000\n')
    (tmp_path / "magic.toml").write_text('out = "run"\n[latency]\nestimate_model = "magic"\n')
    before = sorted(p.name for p in tmp_path.iterdir())
    env = {"SHUFFLENAS_HOME": os.environ["SHUFFLENAS_HOME"], "RAY_ADDRESS": ""}
    for argv, message in ((["--config", "remote.toml"], "--ray-address"),
                          (["--config", "big.toml"], "batch_size 100000"),
                          (["--config", "magic.toml"], "magic"),
                          (["--out", "run", "--dataset", "nope"], "unknown data set 'nope'"),
                          (["--out", "run", "--dataset", "imagefolder", "--data-root", "missing"], "does not exist")):
        # the remote target in its own process: a Ray instance of this test process would reach every target
        run = cli if argv == ["--config", "remote.toml"] else cli_here
        proc = run("search", *argv, cwd=tmp_path, env=env)
        one_line_exit_2(proc)
        assert message in proc.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == before, argv


def test_data_is_loaded_before_the_evaluator_exists(tmp_path):
    driver = SearchDriver(tiny(tmp_path / "out", proxy={"dataset": "cifar10", "data_root": str(tmp_path)}))
    with pytest.raises(DatasetError):
        driver.prepare()
    assert driver._evaluator is None and not (tmp_path / "out").exists()
    good = SearchDriver(tiny(tmp_path / "out", proxy={"limit": 300}))
    good.prepare()
    assert good._evaluator is None and good._data.train_size + good._data.val_size == 300


# -- environment failures ---------------------------------------------------------------------------
def test_environment_failure_keeps_the_preset_and_does_not_count(tmp_path):
    data = load_dataset("digits", None, 16, 1)
    calls = []

    def vanishing_data(arch, data, config):
        from evaluator.proxy import train_proxy

        calls.append(arch)
        if len(calls) == 1:
            raise DatasetError("data set folder /mnt/data is gone")
        return train_proxy(arch, data, config)

    config = tiny(tmp_path / "out", space=PRESET_SPACE, presets=["0.5x"], trials=2)
    result = run_search(config, evaluator=SequentialEvaluator(data, train_fn=vanishing_data))
    assert (result.finished, result.complete, result.failed) == (2, 2, 0)
    trials = load(config).trials
    assert trials[0].state == TrialState.FAIL and trials[0].user_attrs["failure_kind"] == "environment"
    assert trials[0].user_attrs["preset"] == "0.5x"
    redone = [t for t in trials if t.user_attrs.get("preset") == "0.5x" and t.state == TrialState.COMPLETE]
    assert len(redone) == 1 and redone[0].params == trials[0].params


def test_environment_that_keeps_failing_stops_the_run_with_one_line(tmp_path):
    data = load_dataset("digits", None, 16, 1)

    def broken_worker(arch, data, config):
        raise ModuleNotFoundError("No module named 'torchvision'")

    config = tiny(tmp_path / "out", trials=5)
    with pytest.raises(EnvironmentStopError, match="3 trials in a row failed") as info:
        run_search(config, evaluator=SequentialEvaluator(data, train_fn=broken_worker))
    assert "\n" not in str(info.value)
    trials = load(config).trials
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 3 and all(t.user_attrs["failure_kind"] == "environment" for t in failed)
    # the re-queued parameters come up next, so the same candidate failed three times; it waits for the resume
    assert len({tuple(sorted(t.params.items())) for t in failed}) == 1
    assert sum(t.state == TrialState.WAITING for t in trials) == 1
    resumed = run_search(config)  # the environment is fixed: the queued parameters run first
    assert resumed.complete == 5 and resumed.failed == 0
    reran = {tuple(sorted(t.params.items())) for t in load(config).trials if t.state == TrialState.COMPLETE}
    assert {tuple(sorted(t.params.items())) for t in failed} <= reran


def test_failure_kinds():
    assert failure_kind("DatasetError: no CIFAR-10 batches in /data") == "environment"
    assert failure_kind("ModuleNotFoundError: No module named 'onnx'") == "environment"
    assert failure_kind(DatasetError("gone")) == "environment"
    assert failure_kind("MemoryError") == "candidate"            # the candidate's own huge allocation
    assert failure_kind("RuntimeError: loss is NaN") == "candidate"
    assert failure_kind("worker died: the worker died unexpectedly") == "candidate"


# -- estimates never measure ------------------------------------------------------------------------
def test_recorded_estimates_never_measure(tmp_path, monkeypatch):
    """A lookup table lacking a candidate's blocks would measure them: the estimate is left out."""
    from latency_models.estimation.lut import build, lut_path
    from latency_models.measurement.targets import get_target
    from search_space import Architecture

    monkeypatch.setenv("SHUFFLENAS_HOME", str(tmp_path / "home"))
    targets = tmp_path / "targets.toml"
    targets.write_text('[targets.tiny-cal]\ndescription = "test"\nkind = "measure"\nbackend = "onnxruntime"\n'
                       'device = "cpu"\nthreads = 1\nbatch = 1\ninput_size = 32\ncalibration = "tiny-cal"\n')
    target = get_target("tiny-cal", targets)
    other = Architecture(widths=(24, 48, 96), depths=(1, 1, 1), stem=8, conv5=64)  # outside TINY_SPACE
    build(target, [other], block_budget_s=0.02, passes=1)
    table = lut_path("tiny-cal")
    before = table.read_bytes()
    config = tiny(tmp_path / "out", targets=["tiny-cal"], objectives=["accuracy", "latency:tiny-cal"],
                  targets_file=str(targets), trials=1, latency={"record_estimates": True})
    result = run_search(config)
    assert result.complete == 1
    assert table.read_bytes() == before  # no block was measured for the estimate
    attrs = load(config).trials[0].user_attrs
    assert attrs["latency_source:tiny-cal"] == "measured" and "latency_estimate_ms:tiny-cal" not in attrs


# -- reuse across studies, metric names -------------------------------------------------------------
def test_proxy_results_are_reused_across_studies_of_one_storage(tmp_path):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    first = tiny(tmp_path / "out", storage=storage, study="device-cpu")
    run_search(first)
    second = tiny(tmp_path / "out", storage=storage, study="device-arm",
                  objectives=["accuracy", "latency:paper-arm-sd810"])
    result = run_search(second)  # same sampler and seed: the same architectures come up
    assert result.complete == 2
    a, b = load(first).trials, load(second).trials
    for old, new in zip(a, b):
        assert new.user_attrs["arch_id"] == old.user_attrs["arch_id"]
        assert (new.user_attrs["reused_from_study"], new.user_attrs["reused_from"]) == ("device-cpu", old.number)
        assert new.user_attrs["accuracy"] == old.user_attrs["accuracy"]
        assert new.values == [old.user_attrs["accuracy"], old.user_attrs["latency_ms:paper-arm-sd810"]]
    other_proxy = tiny(tmp_path / "out", storage=storage, study="device-more-epochs", proxy={"epochs": 2}, trials=1)
    run_search(other_proxy)
    assert "reused_from" not in load(other_proxy).trials[0].user_attrs  # another proxy setup trains again


def test_metric_names_are_stored_and_added_on_resume(tmp_path):
    config = tiny(tmp_path / "out", trials=1)
    run_search(config)
    assert load(config).metric_names == ["accuracy", "latency:local-cpu"]
    # a study made before names were stored gets them when it is resumed
    old = optuna.create_study(study_name="old", storage=config.storage_url, directions=["maximize", "minimize"])
    old.set_user_attr("objectives", ["accuracy", "latency:local-cpu"])
    assert old.metric_names is None
    run_search(tiny(tmp_path / "out", trials=1, study="old"))
    assert optuna.load_study(study_name="old", storage=config.storage_url).metric_names == [
        "accuracy", "latency:local-cpu"]


# -- config paths, flags, limit ---------------------------------------------------------------------
def test_config_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    recipe = tmp_path / "recipes" / "mine.toml"
    recipe.parent.mkdir()
    recipe.write_text('out = "runs/mine"\ntargets_file = "targets.toml"\n[proxy]\ndata_root = "../data"\n'
                      '[[run]]\nname = "a"\nout = "runs/a"\n[[run]]\nname = "b"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    a, b = load_configs(Path("..") / "recipes" / "mine.toml")
    assert Path(a.out).resolve() == tmp_path / "recipes" / "runs" / "a"
    assert Path(b.out).resolve() == tmp_path / "recipes" / "runs" / "mine"
    assert Path(b.targets_file).resolve() == tmp_path / "recipes" / "targets.toml"
    assert Path(b.proxy.data_root).resolve() == tmp_path / "data"
    flags = load_configs(recipe, {"out": "here", "proxy": {"data_root": "d"}})[1]  # flags: the working directory
    assert (flags.out, flags.proxy.data_root) == ("here", "d")


def test_shipped_recipes_write_under_runs(monkeypatch):
    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(repo)
    assert load_config("experiments/configs/baseline.toml").out == "runs/baseline"
    assert {c.out for c in load_configs("experiments/configs/device_variants.toml")} == {"runs/device_variants"}
    assert load_config("experiments/configs/default.toml").out == "runs/search"


def test_cli_search_from_another_folder_writes_next_to_the_config(cli_here, tmp_path):
    recipe = tmp_path / "recipes" / "tiny.toml"
    recipe.parent.mkdir()
    recipe.write_text('out = "runs/tiny"\nworkers = 1\ntrials = 1\nsampler = "random"\npresets = []\n'
                      'targets = ["paper-arm-sd810"]\nobjectives = ["accuracy", "latency:paper-arm-sd810"]\n'
                      'deploy_input = 32\nprogress = false\n[proxy]\nepochs = 1\nmax_train_batches = 2\n'
                      'batch_size = 32\nlimit = 400\n[space]\n' + "".join(f"{k} = {v}\n" for k, v in TINY_SPACE.items()))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = cli_here("search", "--config", "../recipes/tiny.toml", cwd=cwd,
               env={"SHUFFLENAS_HOME": os.environ["SHUFFLENAS_HOME"]})
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "recipes" / "runs" / "tiny" / "study.db").is_file() and list(cwd.iterdir()) == []
    again = cli_here("search", "--config", "../recipes/tiny.toml", "--trials", "1", cwd=cwd,
                env={"SHUFFLENAS_HOME": os.environ["SHUFFLENAS_HOME"]})
    assert again.returncode == 0 and "1 finished (target 1 reached; nothing to do)" in again.stdout


def test_limit_is_part_of_the_proxy_key(tmp_path):
    assert proxy_key(tiny(tmp_path)) != proxy_key(tiny(tmp_path, proxy={"limit": 500}))
    assert proxy_key(tiny(tmp_path, proxy={"limit": 500})) == proxy_key(tiny(tmp_path, proxy={"limit": 500}))


# -- what the run prints ----------------------------------------------------------------------------
def test_infeasible_trials_are_marked_while_the_search_runs(tmp_path):
    lines: list[str] = []
    config = tiny(tmp_path / "out", budgets={"local-cpu": 0.0001})
    result = run_search(config, echo=lines.append)
    trial_lines = [line for line in lines if line.startswith("trial ")]
    assert len(trial_lines) == 2 and all("INFEASIBLE latency:local-cpu " in line for line in trial_lines)
    assert all(line.rstrip().endswith("> 0.0001 ms") for line in trial_lines)
    assert [row["trial"] for row in result.infeasible] == [0, 1] and result.front == []


def test_headline_when_the_study_already_reached_its_target():
    def result(finished, trials, new):
        return SearchResult("s", "sqlite:///x.db", trials, finished, finished, 0, new, 1.0, [], [], [], [])

    assert result(24, 10, 0).headline() == "24 finished (target 10 reached; nothing to do)"
    assert result(10, 10, 0).headline() == "10 finished (target 10 reached; nothing to do)"
    assert result(10, 10, 4).headline() == "10/10 finished"
    assert result(3, 10, 3).headline() == "3/10 finished"
