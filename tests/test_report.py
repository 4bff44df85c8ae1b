"""Reports and exports of a real study (made by the real driver on SQLite, tiny settings)."""

from __future__ import annotations

import json
import os

import onnxruntime as ort
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from experiments.config import load_config
from experiments.report import non_dominated, trials_frame, write_report
from experiments.search import run_search
from experiments.storage import StorageError, load_study, open_storage
from search_space import SearchSpace

SPACE = {"width_ranges": [[40, 48], [88, 96], [184, 192]], "depth_ranges": [[1, 4], [1, 8], [1, 4]],
         "stem_choices": [24], "conv5_choices": [256, 1024]}


@pytest.fixture(scope="module")
def study_db(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHUFFLENAS_HOME", str(out / "home"))
        config = load_config(None, {
            "out": str(out), "trials": 3, "workers": 1, "sampler": "random", "seed": 3, "presets": ["0.5x", "1.0x"],
            "targets": ["local-cpu", "paper-gpu-1080ti"], "deploy_input": 32, "deploy_classes": 10, "space": SPACE,
            "progress": False, "proxy": {"epochs": 1, "max_train_batches": 2, "batch_size": 32},
            "latency": {"measure_budget_s": 0.05}})
        run_search(config)
        study = optuna.load_study(study_name=config.study, storage=config.storage_url)
        running = study.ask()  # a trial still in progress: the report must cope (read-only)
        SearchSpace.from_dict(SPACE).suggest(running)
    return config


def test_non_dominated():
    points = [(0.9, 10.0), (0.8, 5.0), (0.7, 6.0), (0.9, 12.0), (0.95, 20.0)]
    assert non_dominated(points, [True, False]) == [0, 1, 4]


def test_write_report(study_db, tmp_path):
    study = load_study(open_storage(study_db.storage_url, create=False), study_db.study)
    summary = write_report(study, tmp_path)
    for name in ("trials.csv", "trials.parquet", "pareto.csv", "summary.md", "accuracy_vs_latency_local-cpu.png",
                 "flops_vs_latency_local-cpu.png", "mac_vs_latency_paper-gpu-1080ti.png", "curves.png"):
        assert (tmp_path / name).is_file(), name
    frame = pd.read_parquet(tmp_path / "trials.parquet")
    assert len(frame) == 4 and set(frame["state"]) == {"COMPLETE", "RUNNING"}
    assert set(pd.read_csv(tmp_path / "trials.csv")["preset"].dropna()) == {"0.5x"}
    pareto = pd.read_csv(tmp_path / "pareto.csv")
    done = trials_frame(study)
    done = done[done["state"] == "COMPLETE"]
    expected = non_dominated(done[["value:accuracy", "value:latency:local-cpu"]].values.tolist(), [True, False])
    assert sorted(pareto["number"]) == sorted(done["number"].iloc[expected])
    assert "preset" in pareto.columns and "latency_source:paper-gpu-1080ti" in pareto.columns
    assert pareto["feasible"].all()  # no budgets: every front trial is feasible
    # the driver's per-epoch validation curve (a user attr: trial.report is single-objective only)
    curves = pd.read_csv(tmp_path / "trials.csv").dropna(subset=["curve"])
    assert len(curves) == 3 and all(len(json.loads(c)) == 1 for c in curves["curve"])
    assert len(summary["front"]) == len(pareto)
    text = (tmp_path / "summary.md").read_text()
    assert "## Pareto front" in text and "## Paper presets" in text and "estimate:guideline" in text


def test_cli_report_and_export(cli_here, study_db, tmp_path):
    env = {"SHUFFLENAS_HOME": str(tmp_path / "home")}
    proc = cli_here("report", "--storage", study_db.storage_url, "--study", study_db.study, "--out", str(tmp_path / "r"),
               "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["trials"] == 4 and "pareto.csv" in data["files"]

    proc = cli_here("export", "--storage", study_db.storage_url, "--study", study_db.study, "--trial", "1",
               "--out", str(tmp_path / "m.onnx"), "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["input_size"] == 32 and info["trial"] == 1
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 3, 32, 32]
    study = optuna.load_study(study_name=study_db.study, storage=study_db.storage_url)
    assert info["arch"] == study.trials[1].user_attrs["arch"]


@pytest.mark.parametrize("args, message", [
    (["report", "--study", "nope", "--out", "OUT"], "no study 'nope' in this storage (studies: shufflenas)"),
    (["export", "--study", "shufflenas", "--trial", "99", "--out", "OUT/m.onnx"], "has no trial 99"),
])
def test_cli_unknown_study_or_trial(cli_here, study_db, tmp_path, args, message):
    argv = [a.replace("OUT", str(tmp_path)) for a in args]
    proc = cli_here(*argv[:1], "--storage", study_db.storage_url, *argv[1:])
    assert proc.returncode == 2 and message in proc.stderr and proc.stderr.count("\n") == 1


def test_missing_storage_is_not_created(tmp_path):
    with pytest.raises(StorageError, match="no study storage"):
        load_study(f"sqlite:///{tmp_path}/none.db", "x")
    assert not (tmp_path / "none.db").exists()


def test_compare_fronts_of_two_studies(study_db, tmp_path, capsys):
    from experiments.cli.main import main

    storage = open_storage(study_db.storage_url, create=False)
    source = load_study(storage, study_db.study)
    other = optuna.create_study(study_name="other", storage=storage, directions=source.directions)
    other.set_user_attr("objectives", source.user_attrs["objectives"])
    for trial in source.get_trials(states=(TrialState.COMPLETE,)):
        other.add_trial(trial)
    assert main(["report", "--storage", study_db.storage_url, "--study", study_db.study, "--study", "other",
                 "--out", str(tmp_path)]) == 0
    assert "compare_fronts_local-cpu.png" in capsys.readouterr().out
    assert (tmp_path / "compare_fronts_local-cpu.png").is_file()
    assert (tmp_path / "other" / "pareto.csv").is_file() and (tmp_path / study_db.study / "trials.csv").is_file()
    assert os.path.getsize(tmp_path / "compare_fronts_paper-gpu-1080ti.png") > 0
