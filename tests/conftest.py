"""Shared fixtures. A real local Ray instance is started once per test session (2 CPUs, no
dashboard, loopback only) and only when a test asks for it. ``make test`` runs the suite in two
processes (pytest-xdist, ``-n 2``): each is a test session of its own, with its own Ray when one of
its tests asks; every test keeps its files under its own ``tmp_path``.

Torch runs one intra-op thread here and in every subprocess a test starts (``OMP_NUM_THREADS=1``):
the suite runs on a small shared machine next to its own subprocesses and Ray workers, where
torch's default of a thread per core makes these tiny networks 5-10x slower (threads spin waiting
for a core). Tests of thread handling set their own counts; Ray workers get one thread anyway.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported, and for every subprocess

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import settings  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

REPO = Path(__file__).resolve().parents[1]

# Property tests draw the same examples on every run, so a CI result is reproducible; the
# "explore" profile draws new ones each run (HYPOTHESIS_PROFILE=explore make test) to hunt for new cases.
settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def ray_session():
    """A small local Ray instance shared by every test of this process that needs one.

    Advertises the custom resource ``device:test-board`` so remote-target placement is tested
    for real. Tests must not call ``ray.shutdown()``.
    """
    ray = pytest.importorskip("ray")
    from evaluator.ray_evaluator import _loopback_only

    if not ray.is_initialized():
        with _loopback_only():  # same loopback-only start as the project's own local Ray
            ray.init(num_cpus=2, include_dashboard=False, resources={"device:test-board": 1},
                     log_to_driver=False, configure_logging=False, _node_ip_address="127.0.0.1")
    yield ray
    ray.shutdown()


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real `shufflenas` entry point in a subprocess (exit code, stdout, stderr)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "experiments", *args], cwd=cwd or REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli():
    return run_cli


@dataclasses.dataclass(frozen=True)
class CliRun:
    """What :func:`run_main` saw: the same three fields as a finished subprocess."""

    returncode: int
    stdout: str
    stderr: str


def run_main(*args: str, cwd: Path | None = None, env: dict | None = None) -> CliRun:
    """Run the `shufflenas` command in this process (``experiments.cli.main.main``, the entry
    point's own code), with ``env`` set and ``cwd`` entered for the call only.

    Half a second instead of a fresh interpreter importing torch (5-10 s on a shared 2-core
    machine). Use :func:`run_cli` where the process itself is tested: exit status, signals,
    a fresh interpreter, what a crash leaves behind.
    """
    from experiments.cli.main import main

    saved_env = {key: os.environ.get(key) for key in (env or {})}
    saved_cwd = os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    try:
        os.environ.update(env or {})
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in args])
    finally:
        os.chdir(saved_cwd)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return CliRun(code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli_here():
    """:func:`run_main`: the CLI in this process, same interface as the ``cli`` fixture."""
    return run_main


#: A search space of tiny networks (seconds to train on digits), for search configs in tests.
TINY_SPACE = {"width_ranges": [[8, 16], [16, 32], [32, 48]], "depth_ranges": [[1, 2], [1, 2], [1, 2]],
              "stem_choices": [8], "conv5_choices": [64, 128]}
#: The same space as a TOML ``[space]`` table, for config files written by tests.
TINY_SPACE_TOML = "[space]\n" + "".join(f"{key} = {value}\n" for key, value in TINY_SPACE.items())

_TINY_CPU = """kind = "measure"
backend = "onnxruntime"
device = "cpu"
threads = 1
batch = 1
input_size = 16
"""
TINY_TARGETS = (f'[targets.tiny-cpu]\ndescription = "test: ONNX Runtime CPU, 1 thread, 16x16 input"\n{_TINY_CPU}\n'
                f'[targets.tiny-ref]\ndescription = "test: the same, normalised to the 0.5x reference"\n{_TINY_CPU}'
                'reference = "0.5x"\n')


@pytest.fixture
def tiny_targets(tmp_path, monkeypatch) -> Path:
    """Measurable targets ``tiny-cpu`` and ``tiny-ref`` (normalised) at 16x16, in a fresh
    ``SHUFFLENAS_HOME``; returns the targets file, which ``SHUFFLENAS_TARGETS`` also points to."""
    monkeypatch.setenv("SHUFFLENAS_HOME", str(tmp_path / "home"))
    path = tmp_path / "targets.toml"
    path.write_text(TINY_TARGETS)
    monkeypatch.setenv("SHUFFLENAS_TARGETS", str(path))
    return path
