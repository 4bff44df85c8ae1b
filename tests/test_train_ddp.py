"""`train_ddp`: one training spread over two real Ray Train workers (DDP over gloo on the CPU) of the
test session's local Ray (2 CPUs: the workers take 1 CPU each, Ray Train's controller none). Real
training steps on a slice of digits at 16x16, real checkpoint files, a real ONNX Runtime session."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from evaluator.training.checkpoint import CheckpointError, load_checkpoint
from evaluator.training.distributed import train_ddp
from evaluator.training.loop import TrainError, train_architecture
from evaluator.training.recipe import DataSpec, TrainRecipe
from search_space import Architecture

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = "stem8_w16-32-48_d1-1-1_r0.5-0.5-0.5_k3-3-3_c64"
ARCH = Architecture.from_string(TINY)
DATA = DataSpec("digits", limit=300)
RECIPE = TrainRecipe(epochs=2, batch_size=32, input_size=16, threads=1)
#: the same run as RECIPE on the command line
CLI_RUN = ("--dataset", "digits", "--limit", "300", "--input-size", "16", "--batch-size", "32", "--threads", "1",
           "--epochs", "2", "--no-progress")
SAME = ("epoch", "train_loss", "val_top1", "val_top5", "lr")


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SHUFFLENAS_HOME", str(tmp_path / "home"))


def rows(folder) -> list[tuple]:
    with open(folder / "metrics.csv", newline="") as fh:
        return [tuple(r[c] for c in SAME) for r in csv.DictReader(fh)]


def test_a_killed_single_process_run_is_finished_by_two_workers(ray_session, tmp_path, capsys):
    """The checkpoint format is shared: DDP picks up a run one process started and was killed in, trains
    the last epoch on two workers and writes the model (one Ray Train run: each costs tens of seconds here)."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "experiments", "train", TINY, *CLI_RUN, "--out", str(out)],
                            cwd=REPO, env={**os.environ, "SHUFFLENAS_TRACE": "1"}, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if line.strip() == "trace: checkpoint 1":
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=600)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    first = load_checkpoint(out / "checkpoint.pt")
    assert first["epoch"] == 1 and not (out / "model.pt").exists()

    capsys.readouterr()
    result = train_ddp(ARCH, DATA, RECIPE, out, num_workers=2)
    assert result.resumed_from == 1 and result.epochs == 2  # epoch 1 was not trained again
    assert result.device == "cpu" and result.threads == 1
    assert 0.0 <= result.val_top1 <= result.val_top5 <= 1.0 and np.isfinite(result.train_loss)
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["metrics"][0] == first["metrics"][0] and ckpt["epoch"] == 2 and ckpt["ddp_workers"] == 2
    assert ckpt["arch"] == TINY and [int(r[0]) for r in rows(out)] == [1, 2]
    assert float(rows(out)[-1][2]) == result.val_top1
    err = capsys.readouterr().err
    assert "training with DDP on 2 CPU workers x 1 thread (gloo)" in err and "epoch 2/2: loss" in err
    assert (out / "model.pt").is_file() and (out / "model.onnx").is_file()
    # the exported model runs in ONNX Runtime and gives ten class scores
    import onnxruntime as ort

    session = ort.InferenceSession(result.model_onnx, providers=["CPUExecutionProvider"])
    x = np.zeros((1, *session.get_inputs()[0].shape[1:]), dtype=np.float32)
    assert session.run(None, {session.get_inputs()[0].name: x})[0].shape == (1, 10)
    # one process reads what two wrote: a finished run, nothing is trained or rewritten
    model, before = (out / "model.pt").read_bytes(), rows(out)
    assert train_architecture(ARCH, DATA, RECIPE, out, progress=False).resumed_from == 2
    assert (out / "model.pt").read_bytes() == model and rows(out) == before


def test_a_worker_error_is_one_line_and_keeps_the_folder_clean(ray_session, tmp_path):
    out = tmp_path / "run"
    recipe = RECIPE.replace(epochs=1, lr=1e12, warmup_epochs=0.0)
    # every rank diverges; whichever Ray reports first names itself
    with pytest.raises(TrainError, match=r"^distributed training failed on rank [01]: training diverged in epoch 1"):
        train_ddp(ARCH, DATA, recipe, out, num_workers=2, progress=False)
    assert not (out / "checkpoint.pt").exists() and not (out / "model.pt").exists()


def test_more_workers_than_the_cluster_has_cpus_is_refused(ray_session, tmp_path):
    with pytest.raises(TrainError, match="3 DDP workers x 1 CPU need 3 CPUs; the Ray cluster has 2"):
        train_ddp(ARCH, DATA, RECIPE, tmp_path / "run", num_workers=3, progress=False)


@pytest.mark.parametrize("kwargs, message", [
    ({"num_workers": 0}, "number of DDP workers must be an integer >= 1"),
    ({"num_workers": 2, "cpus_per_worker": 0}, "CPUs per DDP worker must be a number > 0"),
    ({"num_workers": 17}, "batch_size 32 is too small for 17 DDP workers"),
])
def test_bad_settings_are_refused_before_ray_starts(tmp_path, kwargs, message):
    with pytest.raises(TrainError, match=message):
        train_ddp(ARCH, DATA, RECIPE, tmp_path / "run", progress=False, **kwargs)
    assert not (tmp_path / "run").exists()


def test_another_runs_checkpoint_is_refused_before_ray_starts(tmp_path):
    out = tmp_path / "run"
    other = Architecture.from_string("stem8_w16-32-32_d1-1-1_r0.5-0.5-0.5_k3-3-3_c64")
    train_architecture(other, DATA, RECIPE.replace(epochs=1), out, progress=False)
    before = (out / "checkpoint.pt").read_bytes()
    with pytest.raises(CheckpointError, match="belongs to another architecture"):
        train_ddp(ARCH, DATA, RECIPE, out, num_workers=2, progress=False)
    assert (out / "checkpoint.pt").read_bytes() == before


def test_the_command_line_trains_a_fresh_run_on_two_workers_to_its_end(ray_session, tmp_path, cli_here):
    """`shufflenas train --ddp-workers 2` from an empty folder: every epoch on two workers, the model written."""
    out = tmp_path / "run"
    run = cli_here("train", TINY, *CLI_RUN, "--ddp-workers", "2", "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert "wrote model.pt, model.onnx" in run.stdout and "resumed" not in run.stdout, run.stdout
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["epoch"] == 2 and ckpt["ddp_workers"] == 2 and ckpt["arch"] == TINY
    assert [int(r[0]) for r in rows(out)] == [1, 2]
    assert (out / "model.pt").is_file() and (out / "model.onnx").is_file()
