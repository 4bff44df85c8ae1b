"""Worker faults during a real search: only the faulty candidate's trial fails, the search completes.

The search driver runs in-process on a real SQLite study with a real :class:`RayEvaluator` in the
shared local Ray session. Faults are real: worker processes are SIGKILLed from the test (the task
reports its PID in a marker file first), training really diverges (lr = 1e6), a real gigantic
allocation raises ``MemoryError``, a task really hangs past its timeout and is cancelled. Which
candidate gets which fault is decided inside the task by the order in which architectures first
reach a worker (claimed with ``O_EXCL`` files), so the test knows each trial's fate afterwards.
(Evaluator-level retry/timeout semantics are covered in tests/test_evaluators.py.)
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from evaluator.datasets import load_dataset
from evaluator.ray_evaluator import RayEvaluator
from experiments.config import load_config
from experiments.search import run_search
from conftest import TINY_SPACE


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SHUFFLENAS_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", None, 16, 0)


def config(tmp_path: Path, trials: int, seed: int):
    """A search that needs no latency measurement (estimate-only target), so faults are the only cost."""
    return load_config(None, {
        "out": str(tmp_path), "study": "faults", "trials": trials, "workers": 2, "evaluator": "ray",
        "sampler": "random", "seed": seed, "presets": [], "targets": ["paper-arm-sd810"],
        "objectives": ["accuracy", "latency:paper-arm-sd810"], "deploy_input": 32, "deploy_classes": 10,
        "space": TINY_SPACE, "progress": False, "reuse_results": False,
        "proxy": {"epochs": 1, "max_train_batches": 4, "batch_size": 32}})


def fault_train_fn(marker_dir: Path, plan: dict[int, str]):
    """A ``train_fn`` that gives the k-th distinct architecture reaching a worker the fault ``plan[k]``.

    Faults: ``kill`` (report the PID in ``kill-*`` and train until the test kills the worker, every
    attempt), ``kill-once`` (only the first attempt), ``raise``, ``nan`` (lr 1e6), ``oom`` (a 1 PiB
    allocation), ``hang`` (sleep far past the timeout). Anything else trains normally.
    """

    def train(arch, data, cfg):
        import dataclasses
        import os
        import time

        from evaluator.proxy import train_proxy

        slot = None
        for path in sorted(marker_dir.glob("slot-*")):
            if path.read_text() == arch.arch_id:
                slot = int(path.name.split("-")[1])
        k = 0
        while slot is None:
            try:
                fd = os.open(marker_dir / f"slot-{k:03d}", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                k += 1
                continue
            os.write(fd, arch.arch_id.encode())
            os.close(fd)
            slot = k
        attempt = len(list(marker_dir.glob(f"run-{slot:03d}-*")))
        (marker_dir / f"run-{slot:03d}-{attempt}").write_text(str(os.getpid()))
        fault = plan.get(slot, "")
        if fault == "kill" or (fault == "kill-once" and attempt == 0):
            (marker_dir / f"kill-{slot:03d}-{attempt}").write_text(str(os.getpid()))
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # really training when the SIGKILL lands
                train_proxy(arch, data, cfg)
            raise RuntimeError("the test never killed this worker")
        if fault == "raise":
            raise RuntimeError("injected failure in the candidate's code")
        if fault == "nan":
            cfg = dataclasses.replace(cfg, lr=1e6)
        if fault == "oom":
            bytearray(1 << 50)  # 1 PiB: a real MemoryError
        if fault == "hang":
            time.sleep(600)
        return train_proxy(arch, data, cfg)

    return train


class Killer:
    """Kills every worker PID a task reports in ``kill-*`` files (from this, the test process)."""

    def __init__(self, marker_dir: Path) -> None:
        self.marker_dir = marker_dir
        self.killed: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for path in self.marker_dir.glob("kill-*"):
                if path.name not in self.killed:
                    pid = int(path.read_text())
                    time.sleep(0.2)  # let it get into training
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    self.killed[path.name] = pid
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _slots(marker_dir: Path) -> dict[str, int]:
    """arch id -> the slot (fault number) it was given."""
    return {p.read_text(): int(p.name.split("-")[1]) for p in marker_dir.glob("slot-*")}


def _run(tmp_path, data, plan, trials, seed, **evaluator_options):
    marker_dir = tmp_path / "markers"
    marker_dir.mkdir()
    killer = Killer(marker_dir)
    evaluator = RayEvaluator(data, max_in_flight=2, train_fn=fault_train_fn(marker_dir, plan), **evaluator_options)
    cfg = config(tmp_path, trials, seed)
    try:
        result = run_search(cfg, evaluator=evaluator)
    finally:
        evaluator.close()
        killer.stop()
    study = optuna.load_study(study_name=cfg.study, storage=cfg.storage_url)
    slots = _slots(marker_dir)
    fate = {slots[t.user_attrs["arch_id"]]: t for t in study.trials}
    return result, study, fate, killer


def _pid_gone(pid: int, wait_s: float = 30.0) -> bool:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def test_killed_workers_are_retried_then_fail_their_trial_only(tmp_path, data, ray_session):
    result, study, fate, killer = _run(tmp_path, data, {0: "kill", 1: "kill-once"}, trials=4, seed=5, max_retries=1)

    assert result.finished == 4 and len(study.trials) == 4
    doomed, retried = fate[0], fate[1]
    # killed on every attempt: the retry budget (1) is used up, the trial fails with the cause
    assert doomed.state == TrialState.FAIL
    assert doomed.user_attrs["fail_reason"].startswith("training failed: worker died")
    assert {"kill-000-0", "kill-000-1"} <= set(killer.killed)
    # killed once: retried on a fresh worker and completed
    assert retried.state == TrialState.COMPLETE and retried.user_attrs["attempts"] == 2
    assert retried.user_attrs["worker_pid"] != killer.killed["kill-001-0"]
    # the other candidates never noticed
    for slot, trial in fate.items():
        if slot > 1:
            assert trial.state == TrialState.COMPLETE and trial.user_attrs["attempts"] == 1
    assert all(_pid_gone(pid, 1) for pid in killer.killed.values())


def test_raise_nan_oom_and_timeout_fail_only_their_own_trial(tmp_path, data, ray_session):
    plan = {0: "raise", 1: "nan", 2: "oom", 3: "hang"}
    result, study, fate, _ = _run(tmp_path, data, plan, trials=6, seed=11, timeout_s=20)

    assert result.finished == 6 and len(study.trials) == 6
    reasons = {slot: fate[slot].user_attrs.get("fail_reason", "") for slot in plan}
    assert all(fate[slot].state == TrialState.FAIL for slot in plan), reasons
    assert "RuntimeError: injected failure" in reasons[0]
    assert "NaN" in reasons[1] or "infinite" in reasons[1] or "no finite accuracy" in reasons[1]
    assert "MemoryError" in reasons[2]
    assert "timed out after 20 s" in reasons[3]
    # the hanging task was cancelled: its worker process is gone
    hang_pid = int((tmp_path / "markers" / "run-003-0").read_text())
    assert _pid_gone(hang_pid)
    healthy = [t for slot, t in fate.items() if slot not in plan]
    assert len(healthy) == 2 and all(t.state == TrialState.COMPLETE for t in healthy)
    assert all(0 <= t.values[0] <= 1 for t in healthy)
