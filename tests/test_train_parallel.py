"""`train_many`: several real trainings at once as tasks on the real local Ray of the test session
(2 CPUs), one after the other in-process with one worker; a failing job is reported and the others
finish; rerunning resumes every job from its own checkpoint."""

from __future__ import annotations

import pytest

from evaluator.training.checkpoint import load_checkpoint
from evaluator.training.parallel import ParallelTrainError, TrainJob, train_many
from evaluator.training.recipe import DataSpec, TrainRecipe
from search_space import Architecture

TINY = Architecture.from_string("stem8_w16-32-48_d1-1-1_r0.5-0.5-0.5_k3-3-3_c64")
SMALL = Architecture.from_string("stem8_w16-32-32_d1-1-1_r0.5-0.5-0.5_k3-3-3_c64")
DATA = DataSpec("digits", limit=300)
RECIPE = TrainRecipe(epochs=1, batch_size=32, input_size=16, threads=1)
FILES = ("checkpoint.pt", "metrics.csv", "model.pt", "model.onnx")


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SHUFFLENAS_HOME", str(tmp_path / "home"))


def job(arch, out, label=None) -> TrainJob:
    return TrainJob(arch, DATA, RECIPE, str(out), label)


def test_ray_jobs_finish_while_a_failing_one_is_reported_then_resume(ray_session, tmp_path, capsys):
    # a finished run of another architecture, trained in-process (one worker, no address: no Ray task)
    foreign = tmp_path / "foreign"
    [first] = train_many([job(SMALL, foreign, "small")], workers=1, progress=False)
    assert first.ok and first.result.epochs == 1 and first.worker_pid is not None
    before = {name: (foreign / name).read_bytes() for name in FILES}

    jobs = [job(TINY, tmp_path / "a", "a"), job(TINY, foreign, "clash"), job(SMALL, tmp_path / "b", "b")]
    outcomes = train_many(jobs, workers=2, num_cpus=1)
    assert [o.job.label for o in outcomes] == ["a", "clash", "b"]  # the order of the jobs
    a, clash, b = outcomes
    for outcome, arch in ((a, TINY), (b, SMALL)):
        assert outcome.ok and outcome.error is None, outcome.error
        result = outcome.result
        assert result.arch == arch.to_string() and result.epochs == 1 and result.resumed_from == 0
        assert 0.0 <= result.val_top1 <= result.val_top5 <= 1.0
        assert all((tmp_path / outcome.job.label / name).stat().st_size > 0 for name in FILES)
        assert load_checkpoint(tmp_path / outcome.job.label / "checkpoint.pt")["arch"] == arch.to_string()
    assert {a.worker_pid, b.worker_pid}.isdisjoint({None})
    assert not clash.ok and clash.result is None
    assert "belongs to another architecture" in clash.error and "\n" not in clash.error
    assert {name: (foreign / name).read_bytes() for name in FILES} == before  # nothing of it overwritten
    err = capsys.readouterr().err
    assert "clash: failed: " in err and "a: val top-1" in err and "b: val top-1" in err
    assert clash.summary()["error"] == clash.error and a.summary()["val_top1"] == a.result.val_top1

    # the same jobs again: every good one resumes from its checkpoint, no epoch is trained again
    metrics = (tmp_path / "a" / "metrics.csv").read_bytes()
    again = train_many([jobs[0], jobs[2]], workers=2, progress=False)
    assert all(o.ok and o.result.resumed_from == 1 and o.result.epochs == 1 for o in again)
    assert (tmp_path / "a" / "metrics.csv").read_bytes().splitlines()[:2] == metrics.splitlines()[:2]


def test_in_process_with_one_worker_goes_on_after_a_failure(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "model.pt").write_bytes(b"someone else's model")
    outcomes = train_many([job(TINY, tmp_path / "taken"), job(TINY, tmp_path / "free")], workers=1, progress=False)
    assert not outcomes[0].ok and "already holds model.pt" in outcomes[0].error
    assert (tmp_path / "taken" / "model.pt").read_bytes() == b"someone else's model"
    assert outcomes[1].ok and (tmp_path / "free" / "model.onnx").is_file()


@pytest.mark.parametrize("kwargs, message", [
    ({"workers": 0}, "workers must be an integer >= 1"),
    ({"workers": 2, "num_cpus": -1}, "num_cpus per job must be a number >= 0"),
    ({"workers": 2, "num_gpus": 1.5}, "num_gpus per job above 1 must be a whole number"),
])
def test_bad_settings_are_refused_before_anything_runs(tmp_path, kwargs, message):
    with pytest.raises(ParallelTrainError, match=message):
        train_many([job(TINY, tmp_path / "x")], **kwargs)
    assert not (tmp_path / "x").exists()


def test_two_jobs_into_one_folder_are_refused(tmp_path):
    with pytest.raises(ParallelTrainError, match="both write to"):
        train_many([job(TINY, tmp_path / "x", 1), job(SMALL, tmp_path / "sub" / ".." / "x", 2)], workers=2)
    assert not (tmp_path / "x").exists()


def test_a_job_the_cluster_cannot_place_is_refused(ray_session, tmp_path):
    with pytest.raises(ParallelTrainError, match="each job asks for 1 GPU; the Ray cluster has 0"):
        train_many([job(TINY, tmp_path / "x")], workers=2, num_gpus=1)
    assert not (tmp_path / "x").exists()
