"""What a measuring device needs: numpy, onnxruntime and (for Ray) ray - never torch, optuna or shufflenas."""

from __future__ import annotations

import subprocess
import sys

import pytest

from latency_models.measurement.onnx_export import export_module_bytes
from search_space import Architecture, build_model

TINY = Architecture(widths=(8, 16, 32), depths=(1, 1, 1), stem=8, conv5=32)


def test_device_runtime_imports_no_torch_or_optuna():
    code = ("import latency_models.measurement.device_runtime, sys; "
            "bad = [m for m in ('torch', 'optuna', 'ray', 'search_space', 'pandas') if m in sys.modules]; "
            "assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_shipped_task_runs_where_shufflenas_cannot_be_imported(tmp_path):
    """The Ray task function is pickled by value: a process that cannot import latency_models,
    search_space or torch (like a bare board) still runs it."""
    ray = pytest.importorskip("ray")
    import evaluator.remote_latency  # noqa: F401  (registers device_runtime for pickling by value)
    from latency_models.measurement import device_runtime

    payload = tmp_path / "task.pkl"
    model = export_module_bytes(build_model(TINY, 10, 16), (1, 3, 16, 16))
    payload.write_bytes(ray.cloudpickle.dumps((device_runtime.measure_onnx_stable, model)))
    code = (
        "import sys, pickle\n"
        "for name in ('latency_models', 'search_space', 'torch', 'optuna', 'evaluator'):\n"
        "    sys.modules[name] = None  # any import of these now fails\n"
        f"fn, model = pickle.loads(open({str(payload)!r}, 'rb').read())\n"
        "r = fn(model, (1, 3, 16, 16), threads=1, min_runs=2, max_runs=2)\n"
        "assert r['runs'] == 2 and r['median_ms'] > 0, r\n"
        "assert isinstance(r['niceness'], int) and len(r['load_avg']) == 3 and r['attempts'] >= 1, r\n"
        "assert isinstance(r['stable'], bool), r\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]
