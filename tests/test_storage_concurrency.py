"""Several `shufflenas search` processes on one study: journal storage shares it, SQLite refuses.

Running the same search command in several processes against one journal file (or a server
database) is the way to scale out without a Ray cluster. Two real CLI processes start at the same
moment on a fresh journal file: the study is created once, the preset is queued and trained once,
no trial is lost or run twice, and each process's trials are recorded under its own PID. SQLite
cannot take several writer processes safely, so a second search on the same SQLite file is refused
with one line that points to journal or server storage, and the first one finishes untouched.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from experiments.storage import open_storage

REPO = Path(__file__).resolve().parents[1]
TRIALS = 6

CONFIG = """
workers = 1
evaluator = "sequential"
sampler = "random"
presets = ["0.5x"]
targets = ["paper-arm-sd810"]
objectives = ["accuracy", "latency:paper-arm-sd810"]
deploy_input = 32
deploy_classes = 10
progress = false

[space]
width_ranges = [[8, 48], [16, 96], [32, 192]]
depth_ranges = [[1, 4], [1, 8], [1, 4]]
stem_choices = [8, 24]
conv5_choices = [64, 1024]

[proxy]
epochs = 1
batch_size = 32
max_train_batches = 3
"""


def _start(tmp_path: Path, storage: str, seed: int, trials: int = TRIALS, trace: bool = False) -> subprocess.Popen:
    config = tmp_path / "concurrent.toml"
    config.write_text(CONFIG)
    env = {**os.environ, "SHUFFLENAS_HOME": str(tmp_path / "home"), "SHUFFLENAS_TRACE": "1" if trace else ""}
    return subprocess.Popen([sys.executable, "-m", "experiments", "search", "--config", str(config),
                             "--storage", storage, "--study", "shared", "--trials", str(trials), "--seed", str(seed), "--out", str(tmp_path)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _load(storage: str) -> optuna.Study:
    return optuna.load_study(study_name="shared", storage=open_storage(storage, create=False))


def test_two_processes_share_a_journal_study(tmp_path):
    storage = f"journal:///{tmp_path / 'study.log'}"
    procs = [_start(tmp_path, storage, seed) for seed in (1, 2)]  # the same command, its own seed each
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
        assert "Traceback" not in err

    study = _load(storage)
    trials = study.trials
    states = [t.state for t in trials]
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    finished = [t for t in trials if t.state == TrialState.COMPLETE
                or (t.state == TrialState.FAIL and not t.user_attrs.get("requeued"))]
    assert len(finished) == TRIALS, [(t.number, t.state, t.user_attrs.get("owner")) for t in trials]
    # the preset was queued once and trained once (no two trials from one enqueue)
    queued = [t for t in trials if "fixed_params" in t.system_attrs]
    assert len(queued) == 1
    assert [t.user_attrs.get("preset") for t in trials if t.state == TrialState.COMPLETE].count("0.5x") == 1
    # every trial was asked by one of the two processes, and both did work
    owners = {t.user_attrs["owner"].split(":")[1] for t in trials}
    assert owners == {str(p.pid) for p in procs}
    assert len({t.number for t in trials}) == len(trials)


FIRST_TRIALS = 16


def test_second_sqlite_writer_is_refused(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    # long enough to still run when the second starts (which takes ~10 s to import torch and optuna)
    first = _start(tmp_path, storage, seed=1, trials=FIRST_TRIALS, trace=True)
    assert first.stderr is not None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:  # wait until the first search is working on a trial
        line = first.stderr.readline()
        if not line or line.startswith("trace: "):
            break
    assert first.poll() is None, "the first search ended before the second one started"

    second = _start(tmp_path, storage, seed=2, trials=4)
    out, err = second.communicate(timeout=120)
    lines = [line for line in err.splitlines() if line.strip()]
    assert second.returncode == 2 and len(lines) == 1, err
    assert lines[0].startswith("error: another search is writing to") and "journal:///" in lines[0]

    _, rest = first.communicate(timeout=300)
    assert first.returncode == 0, rest
    study = _load(storage)
    assert len(study.trials) == FIRST_TRIALS and all(t.state == TrialState.COMPLETE for t in study.trials)
    assert {t.user_attrs["owner"].split(":")[1] for t in study.trials} == {str(first.pid)}


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_lock_is_released_for_the_next_run(tmp_path, kind):
    """In one process, runs follow each other on the same file (the lock goes with the run)."""
    from experiments.storage import writer_lock

    url = f"sqlite:///{tmp_path / 'x.db'}" if kind == "sqlite" else f"journal:///{tmp_path / 'x.log'}"
    with writer_lock(url):
        pass
    with writer_lock(url):
        pass
