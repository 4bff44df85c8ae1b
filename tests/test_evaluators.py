"""Evaluators end to end: the sequential one in-process, the Ray one on the real local Ray session.

Faults are injected through ``train_fn`` (nested functions, so Ray ships them by value): an
exception, a task that sleeps past the timeout, and a worker that SIGKILLs itself once.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from evaluator import EvalOutcome, EvalTask, Evaluator, ProxyConfig, SequentialEvaluator, load_dataset, make_evaluator
from evaluator.datasets import DatasetError
from search_space import Architecture
from search_space.errors import ShufflenasError

TINY = Architecture(widths=(24, 48, 96), depths=(1, 1, 1), stem=16, conv5=128)
QUICK = ProxyConfig(epochs=1, batch_size=32, max_train_batches=2, bn_recalibration_batches=1)
BOOM_SEED, SLEEP_SEED, KILL_SEED = 666, 777, 888


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", input_size=16, limit=160)


def faulty_train_fn(marker: Path | None = None):
    """``train_proxy`` with faults keyed by the config's seed."""

    def train(arch, data, config):
        import os
        import signal
        import time

        from evaluator.proxy import train_proxy

        if config.seed == BOOM_SEED:
            raise RuntimeError("boom: injected failure")
        if config.seed == SLEEP_SEED:
            time.sleep(600)
        if config.seed == KILL_SEED and marker is not None and not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return train_proxy(arch, data, config)

    return train


def drain(evaluator: Evaluator, limit: int = 50) -> dict:
    outcomes: dict = {}
    for _ in range(limit):
        if not evaluator.pending():
            break
        for outcome in evaluator.poll(timeout=120):
            assert outcome.key not in outcomes, "an outcome came back twice"
            outcomes[outcome.key] = outcome
    assert evaluator.pending() == 0
    return outcomes


# -- sequential ---------------------------------------------------------------------------------
def test_sequential_protocol_and_failures(data):
    with make_evaluator("sequential", data, train_fn=faulty_train_fn()) as ev:
        assert isinstance(ev, SequentialEvaluator) and isinstance(ev, Evaluator)
        assert ev.poll(timeout=0) == []
        ev.submit(EvalTask("good", TINY, QUICK))
        ev.submit(EvalTask("bad", TINY, QUICK.replace(seed=BOOM_SEED)))
        ev.submit(EvalTask("nan", TINY, QUICK.replace(lr=1e12, max_train_batches=None)))
        assert ev.pending() == 3
        out = drain(ev)
    assert set(out) == {"good", "bad", "nan"}
    assert out["good"].ok and out["good"].worker_pid == os.getpid() and out["good"].accuracy is not None
    assert not out["bad"].ok and out["bad"].error == "RuntimeError: boom: injected failure"
    assert not out["nan"].ok and out["nan"].result is not None and "NaN" in out["nan"].error


def test_submit_rejects_a_batch_larger_than_the_data(data):
    with SequentialEvaluator(data) as ev, pytest.raises(DatasetError, match="larger than"):
        ev.submit(EvalTask("x", TINY, ProxyConfig(batch_size=10_000)))


def test_make_evaluator_errors(data):
    with pytest.raises(ShufflenasError, match="unknown evaluator 'gpu'"):
        make_evaluator("gpu", data)
    with pytest.raises(ShufflenasError, match="unexpected keyword argument 'wrokers'"):
        make_evaluator("sequential", data, wrokers=2)


def test_outcome_to_dict(data):
    outcome = SequentialEvaluator(data).run_one(EvalTask("k", TINY, QUICK))
    d = outcome.to_dict()
    assert d["key"] == "k" and d["ok"] and d["result"]["status"] == "ok" and d["attempts"] == 1


# -- ray ----------------------------------------------------------------------------------------
def test_ray_parallel_results_reuse_the_session(ray_session, data):
    ev = make_evaluator("ray", data, max_in_flight=2)
    try:
        assert ev._owns_ray is False  # the initialised session is reused, not a second Ray
        for i in range(4):
            ev.submit(EvalTask(f"arch-{i}", TINY, QUICK.replace(seed=i)))
        assert ev.pending() == 4 and len(ev.running()) == 2  # bounded; the rest waits locally
        out = drain(ev)
    finally:
        ev.close()
    assert ray_session.is_initialized()
    assert set(out) == {f"arch-{i}" for i in range(4)}
    assert all(o.ok and o.attempts == 1 and o.worker_pid and o.worker_pid != os.getpid() for o in out.values())
    assert all(0.0 <= o.result.accuracy <= 1.0 for o in out.values())
    # same seed, same data: the Ray result equals the in-process one
    local = SequentialEvaluator(data).run_one(EvalTask("arch-0", TINY, QUICK.replace(seed=0)))
    assert local.result.val_curve == out["arch-0"].result.val_curve


def test_ray_exception_fails_only_its_task(ray_session, data):
    with make_evaluator("ray", data, train_fn=faulty_train_fn()) as ev:
        ev.submit(EvalTask("bad", TINY, QUICK.replace(seed=BOOM_SEED)))
        ev.submit(EvalTask("good", TINY, QUICK))
        out = drain(ev)
    assert out["good"].ok
    bad = out["bad"]
    assert not bad.ok and bad.error == "RuntimeError: boom: injected failure" and bad.attempts == 1
    assert bad.worker_pid is not None


def test_ray_timeout_fails_only_its_task(ray_session, data):
    with make_evaluator("ray", data, timeout_s=12, train_fn=faulty_train_fn()) as ev:
        ev.submit(EvalTask("slow", TINY, QUICK.replace(seed=SLEEP_SEED)))
        ev.submit(EvalTask("fast-1", TINY, QUICK))
        ev.submit(EvalTask("fast-2", TINY, QUICK.replace(seed=1)))
        out = drain(ev)
    assert out["fast-1"].ok and out["fast-2"].ok
    assert not out["slow"].ok and "timed out after 12 s" in out["slow"].error


def test_ray_killed_worker_is_retried(ray_session, data, tmp_path):
    marker = tmp_path / "killed-once"
    with make_evaluator("ray", data, max_retries=1, train_fn=faulty_train_fn(marker)) as ev:
        ev.submit(EvalTask("victim", TINY, QUICK.replace(seed=KILL_SEED)))
        out = drain(ev)
    victim: EvalOutcome = out["victim"]
    assert marker.exists(), "the first attempt ran and killed its worker"
    assert victim.ok and victim.attempts == 2
    assert victim.worker_pid != int(marker.read_text())


def test_ray_killed_worker_without_retries_is_reported(ray_session, data, tmp_path):
    marker = tmp_path / "killed"
    with make_evaluator("ray", data, max_retries=0, train_fn=faulty_train_fn(marker)) as ev:
        ev.submit(EvalTask("victim", TINY, QUICK.replace(seed=KILL_SEED)))
        ev.submit(EvalTask("bystander", TINY, QUICK))
        out = drain(ev)
    assert out["bystander"].ok
    assert not out["victim"].ok and out["victim"].error.startswith("worker died") and out["victim"].attempts == 1


def test_ray_unreachable_address_is_one_line():
    """In a fresh process (the test session's Ray is already up here): a dead address fails fast."""
    import subprocess
    import sys

    code = ("from evaluator.ray_evaluator import RayConnectionError, ensure_ray\n"
            "try:\n    ensure_ray('127.0.0.1:1', connect_timeout=2)\n"
            "except RayConnectionError as exc:\n    print('ERR', exc)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("ERR")]
    assert len(lines) == 1 and "no Ray cluster answers at '127.0.0.1:1'" in lines[0], proc.stdout + proc.stderr
