"""Kill anywhere, lose nothing: `shufflenas search` is SIGKILLed in a known phase and restarted.

The real CLI runs in a subprocess on real SQLite and journal storage (16x16 digits, one epoch, a
32x32 deploy input). With ``SHUFFLENAS_TRACE=1`` the driver prints ``trace: EVENT TRIAL`` lines on
stderr (``measure``: latency measurement starts, ``train``: proxy training submitted, ``told``: a
result was written); the test kills the process the moment it reads the chosen line, then checks
the storage and the caches, restarts the same command and finally checks that nothing was lost.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import TINY_SPACE_TOML
from experiments.storage import open_storage

REPO = Path(__file__).resolve().parents[1]
TRIALS = 3

CONFIG = f"""
trials = {TRIALS}
workers = 1
evaluator = "sequential"
sampler = "random"
seed = 3
targets = ["local-cpu", "paper-arm-sd810"]
deploy_input = 32
deploy_classes = 10
presets = []
progress = false

{TINY_SPACE_TOML}
[proxy]
epochs = 1
batch_size = 32
max_train_batches = 4

[latency]
measure_budget_s = 0.1
"""

#: (event, occurrence within that run) at which each successive run is killed; the last run finishes.
KILL_PLAN = {
    "sqlite": [("measure", 2), ("train", 1), ("told", 1)],
    "journal": [("train", 2), ("told", 1)],
}


class Traced:
    """A CLI subprocess whose stderr lines are read by a thread (so waiting never blocks on a pipe)."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "experiments", *args], cwd=REPO, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def kill_at(self, event: str, occurrence: int, timeout: float = 120.0) -> int:
        """SIGKILL the process on the ``occurrence``-th ``trace: EVENT N`` line; returns N."""
        count = 0
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self.proc.kill()
                pytest.fail(f"no 'trace: {event}' line within {timeout} s; stderr: {self.seen[-10:]}")
            if line is None:
                self.proc.wait()
                pytest.fail(f"search exited ({self.proc.returncode}) before 'trace: {event}' #{occurrence}; "
                            f"stderr: {self.seen[-10:]}")
            self.seen.append(line)
            parts = line.split()
            if parts[:2] == ["trace:", event]:
                count += 1
                if count == occurrence:
                    os.kill(self.proc.pid, signal.SIGKILL)
                    self.proc.wait()
                    return int(parts[2])

    def finish(self, timeout: float = 180.0) -> None:
        self.proc.wait(timeout=timeout)
        while (line := self.lines.get(timeout=10)) is not None:
            self.seen.append(line)
        assert self.proc.returncode == 0, self.seen[-10:]
        assert not any("Traceback" in line for line in self.seen), self.seen


def _snapshot(storage: str) -> dict[int, tuple[TrialState, tuple | None, dict]]:
    study = optuna.load_study(study_name="crash", storage=open_storage(storage, create=False))
    return {t.number: (t.state, tuple(t.values) if t.values else None, dict(t.params)) for t in study.trials}


def _cache_rows(home: Path) -> dict[str, str]:
    path = home / "measurements" / "measurements.sqlite"
    if not path.exists():
        return {}
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return dict(conn.execute("SELECT key, record FROM measurements").fetchall())


def _storage_url(kind: str, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}" if kind == "sqlite" else f"journal:///{tmp_path / 'study.log'}"


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_sigkill_in_every_phase_loses_nothing(kind, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("SHUFFLENAS_HOME", str(home))
    config = tmp_path / "crash.toml"
    config.write_text(CONFIG)
    storage = _storage_url(kind, tmp_path)
    env = {**os.environ, "SHUFFLENAS_HOME": str(home), "SHUFFLENAS_TRACE": "1"}
    args = ["search", "--config", str(config), "--storage", storage, "--study", "crash", "--out", str(tmp_path)]

    complete_before: dict[int, tuple] = {}     # every COMPLETE trial seen after any kill
    interrupted: set[int] = set()              # trials left RUNNING by a kill
    cache_before: dict[str, str] = {}
    for event, occurrence in KILL_PLAN[kind]:
        number = Traced(args, env).kill_at(event, occurrence)
        snap = _snapshot(storage)
        if event == "told":
            assert snap[number][0] == TrialState.COMPLETE
        else:
            assert snap[number][0] == TrialState.RUNNING
        for n, (state, values, params) in snap.items():
            if state == TrialState.COMPLETE:
                assert complete_before.setdefault(n, (values, params)) == (values, params)
            elif state == TrialState.RUNNING:
                interrupted.add(n)
        rows = _cache_rows(home)
        assert {k: rows[k] for k in cache_before} == cache_before  # earlier entries intact
        cache_before = rows

    Traced(args, env).finish()

    study = optuna.load_study(study_name="crash", storage=open_storage(storage, create=False))
    trials = {t.number: t for t in study.trials}
    # every result written before a kill is still there, unchanged
    for n, (values, params) in complete_before.items():
        assert trials[n].state == TrialState.COMPLETE
        assert (tuple(trials[n].values), dict(trials[n].params)) == (values, params)
    # trials left RUNNING were failed as interrupted and their architecture was re-run
    assert interrupted
    completed_params = [t.params for t in study.trials if t.state == TrialState.COMPLETE]
    for n in interrupted:
        t = trials[n]
        assert t.state == TrialState.FAIL and t.user_attrs["requeued"] is True
        assert t.user_attrs["fail_reason"].startswith("interrupted")
        # re-run with its parameters (a kill inside the draw leaves part of them: that part is kept)
        assert any(t.params.items() <= params.items() for params in completed_params)
    # the study reached the asked count; nothing is left running or waiting
    states = [t.state for t in study.trials]
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    counted = [t for t in study.trials if t.state == TrialState.COMPLETE
               or (t.state == TrialState.FAIL and not t.user_attrs.get("requeued"))]
    assert len(counted) == TRIALS
    # the measurement cache still loads and still gives the values the trials recorded
    rows = _cache_rows(home)
    assert {k: rows[k] for k in cache_before} == cache_before
    _check_cached_latency(study, home)


def _check_cached_latency(study: optuna.Study, home: Path) -> None:
    import onnx

    from latency_models.measurement.measure import MeasurementCache, measure
    from latency_models.measurement.targets import get_target
    from search_space import Architecture

    target = dataclasses.replace(get_target("local-cpu"), input_size=32)
    cache = MeasurementCache(home / "measurements" / "measurements.sqlite")
    for t in study.trials:
        if t.state == TrialState.COMPLETE:
            arch = Architecture.from_string(t.user_attrs["arch"])
            if t.user_attrs.get("latency_stable:local-cpu") is False:
                continue  # a disturbed measurement (a busy machine) is recorded on the trial, never cached
            m = measure(arch, target, cache=cache, num_classes=10)
            assert m.cached and m.median_ms == pytest.approx(t.user_attrs["latency_ms:local-cpu"])
    assert cache.usable
    for path in (home / "onnx").glob("*.onnx"):  # every export left by a killed run is a whole model
        onnx.checker.check_model(onnx.load(str(path)))
