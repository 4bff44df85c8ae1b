"""A training run killed with SIGKILL resumes from its last checkpoint with exactly the metrics of a
run that was never interrupted; checkpoints of other runs, and damaged ones, are refused and kept.

The kills hit real `shufflenas train` subprocesses in a known phase (``SHUFFLENAS_TRACE=1`` makes the
loop print ``trace: saving N`` right before writing the checkpoint of epoch N and ``trace:
checkpoint N`` right after).
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch

from evaluator.training.checkpoint import load_checkpoint
from experiments.cli.main import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = "stem8_w16-32-48_d1-1-1_r0.5-0.5-0.5_k3-3-3_c64"
OTHER = "stem8_w16-32-32_d1-1-1_r0.5-0.5-0.5_k3-3-3_c64"
RUN = ("--dataset", "digits", "--limit", "300", "--input-size", "16", "--batch-size", "32", "--threads", "1",
       "--ema", "--no-progress")
EPOCHS = ("--epochs", "3")
#: columns that must agree between a resumed and an uninterrupted run (timings may not)
SAME = ("epoch", "train_loss", "val_top1", "val_top5", "lr")


def rows(folder) -> list[tuple]:
    with open(folder / "metrics.csv", newline="") as fh:
        return [tuple(r[c] for c in SAME) for r in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 3-epoch run."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert main(["train", TINY, *RUN, *EPOCHS, "--out", str(out)]) == 0
    return out


def kill_at(out, event: str) -> None:
    """Start the CLI and SIGKILL it as soon as it prints ``trace: EVENT``."""
    proc = subprocess.Popen([sys.executable, "-m", "experiments", "train", TINY, *RUN, *EPOCHS, "--out", str(out)],
                            cwd=REPO, env={**os.environ, "SHUFFLENAS_TRACE": "1"}, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if line.strip() == f"trace: {event}":
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=600)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before 'trace: {event}' ({proc.returncode})"


def assert_same_as_reference(out, reference) -> None:
    assert rows(out) == rows(reference)
    ours, theirs = load_checkpoint(out / "checkpoint.pt"), load_checkpoint(reference / "checkpoint.pt")
    assert ours["epoch"] == theirs["epoch"] == 3
    assert all(torch.equal(ours["model"][k], v) for k, v in theirs["model"].items())
    assert all(torch.equal(ours["ema"]["module"][k], v) for k, v in theirs["ema"]["module"].items())
    assert (out / "model.pt").is_file() and (out / "model.onnx").is_file()


def test_kill_after_first_checkpoint_resumes_identically(reference, tmp_path, cli_here):
    out = tmp_path / "run"
    kill_at(out, "checkpoint 1")
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1
    assert not (out / "model.pt").exists()
    done = cli_here("train", TINY, *RUN, *EPOCHS, "--out", str(out))  # the same command again resumes
    assert done.returncode == 0, done.stderr
    assert "resuming from" in done.stderr and "after epoch 1/3" in done.stderr
    assert_same_as_reference(out, reference)
    assert not list(out.glob(".*.tmp"))


def test_kill_while_writing_a_checkpoint_resumes_identically(reference, tmp_path):
    out = tmp_path / "run"
    kill_at(out, "saving 2")
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] in (1, 2)  # the old file or the new one, never torn
    assert main(["train", TINY, *RUN, *EPOCHS, "--out", str(out)]) == 0
    assert_same_as_reference(out, reference)
    assert not list(out.glob(".*.tmp"))


# -- refusals: one line, exit 2, nothing touched -------------------------------------------------------
@pytest.fixture(scope="module")
def finished(reference):
    """A finished run whose folder the refusal cases aim at (the uninterrupted reference run: every
    case differs from it in one thing, or damages a copy)."""
    return reference


def snapshot(folder) -> dict[str, bytes | str]:
    if not folder.is_dir():
        return {}
    return {p.name: p.read_bytes() if p.is_file() else "dir" for p in sorted(folder.iterdir())}


def refused(capsys, argv: list[str], message: str) -> None:
    capsys.readouterr()
    code = main(["train", *argv])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


@pytest.mark.parametrize("argv, message", [
    ([OTHER, *RUN, *EPOCHS], "another architecture"),
    ([TINY, *RUN, *EPOCHS, "--limit", "200"], "data set train"),
    ([TINY, *RUN, *EPOCHS, "--input-size", "20"], "data set input_size"),
    ([TINY, *RUN, "--epochs", "2"], "recipe option epochs"),
    ([TINY, *RUN, *EPOCHS, "--lr", "0.05"], "recipe option lr"),
    ([TINY, *RUN, *EPOCHS, "--no-ema"], "recipe option ema"),
    ([TINY, *RUN, *EPOCHS, "--flip"], "recipe option flip"),  # digits trained without (the default)
])
def test_checkpoint_of_another_run_is_refused(finished, capsys, argv, message):
    before = snapshot(finished)
    refused(capsys, [*argv, "--out", str(finished)], message)
    assert snapshot(finished) == before


@pytest.mark.parametrize("damage, message", [
    ("random", "unreadable"), ("truncated", "unreadable"), ("empty", "unreadable"), ("foreign", "not a shufflenas"),
    ("directory", "not a file"), ("pickle-opcode", "unreadable"),
])
def test_damaged_checkpoint_is_refused_and_kept(finished, tmp_path, capsys, damage, message):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    ckpt = out / "checkpoint.pt"
    good = ckpt.read_bytes()
    if damage == "random":
        ckpt.write_bytes(bytes(range(256)) * 40)
    elif damage == "truncated":
        ckpt.write_bytes(good[: len(good) // 2])
    elif damage == "empty":
        ckpt.write_bytes(b"")
    elif damage == "pickle-opcode":  # a legacy-pickle stream whose first opcode pops an empty stack
        ckpt.write_bytes(b"a x")
    elif damage == "foreign":
        torch.save({"state_dict": {"w": torch.zeros(2)}}, ckpt)
    else:
        ckpt.unlink()
        ckpt.mkdir()
    before = snapshot(out)
    refused(capsys, [TINY, *RUN, *EPOCHS, "--out", str(out)], message)
    assert snapshot(out) == before


def test_results_without_a_checkpoint_are_not_overwritten(finished, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(finished / "model.pt", out / "model.pt")
    shutil.copy(finished / "metrics.csv", out / "metrics.csv")
    before = snapshot(out)
    refused(capsys, [TINY, *RUN, "--epochs", "1", "--out", str(out)], "no checkpoint.pt")
    assert snapshot(out) == before


def test_bad_output_and_input_are_refused_before_writing(tmp_path, capsys):
    afile = tmp_path / "a-file"
    afile.write_text("keep me")
    cases = [
        ([TINY, *RUN, "--epochs", "1", "--out", str(afile)], "not a directory"),
        ([TINY, *RUN, "--epochs", "1", "--out", str(afile / "sub")], "not a directory"),
        ([TINY, *RUN, "--epochs", "1", "--out", "/proc/nope/run"], "--out"),
        ([TINY, *RUN, "--epochs", "0", "--out", str(tmp_path / "o")], "--epochs"),
        ([TINY, "--dataset", "imagenet-typo", "--epochs", "1", "--out", str(tmp_path / "o")], "unknown data set"),
        ([TINY, "--dataset", "fashion-mnist", "--data-root", str(tmp_path / "empty"), "--epochs", "1",
          "--out", str(tmp_path / "o")], "fashion"),
        ([TINY, *RUN, "--epochs", "1", "--batch-size", "5000", "--out", str(tmp_path / "o")], "batch_size"),
        ([TINY, *RUN, "--epochs", "1", "--init", f"torchvision:{tmp_path / 'missing.pth'}",
          "--out", str(tmp_path / "o")], "missing.pth"),
        ([TINY, *RUN, "--epochs", "1", "--config", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "o")],
         "missing.toml"),
        (["not-an-arch", *RUN, "--epochs", "1", "--out", str(tmp_path / "o")], "ARCH"),
    ]
    (tmp_path / "empty").mkdir()
    for argv, message in cases:
        refused(capsys, argv, message)
        assert not (tmp_path / "o").exists()
    assert afile.read_text() == "keep me"


def test_a_second_training_into_a_busy_folder_is_refused_and_the_first_resumes(reference, tmp_path, capsys):
    """While a real run holds its folder (stopped right after its first checkpoint), a second
    `shufflenas train` there is refused in one line and writes nothing; once the first is killed
    the kernel has dropped its lock, and the same command resumes it to the uninterrupted metrics."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "experiments", "train", TINY, *RUN, *EPOCHS, "--out", str(out)],
                            cwd=REPO, env={**os.environ, "SHUFFLENAS_TRACE": "1"}, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if line.strip() == "trace: checkpoint 1":
                proc.send_signal(signal.SIGSTOP)  # holds the folder, writes nothing more
                break
        before = snapshot(out)
        assert "checkpoint.pt" in before
        refused(capsys, [TINY, *RUN, *EPOCHS, "--out", str(out)], "another training is writing to")
        assert snapshot(out) == before
    finally:
        proc.kill()
        proc.wait(timeout=600)
        proc.stderr.close()
    assert main(["train", TINY, *RUN, *EPOCHS, "--out", str(out)]) == 0
    assert rows(out) == rows(reference)
