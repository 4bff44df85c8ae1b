"""Opt-in: the device code on real aarch64 ONNX Runtime/numpy wheels in a qemu-emulated Debian root.

Runs ``benchmarks/arm_emulated_check.sh`` only with SHUFFLENAS_ARM_TEST=1, as root, with qemu-user-static
and debootstrap installed (the first run builds the root and downloads wheels: several minutes and
network). It checks outputs against x86 ONNX Runtime; emulated timings are never ARM latency.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "arm_emulated_check.sh"


def _skip_reason() -> str | None:
    if os.environ.get("SHUFFLENAS_ARM_TEST") != "1":
        return "opt-in: set SHUFFLENAS_ARM_TEST=1"
    for tool in ("qemu-aarch64-static", "debootstrap", "chroot"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if os.geteuid() != 0:
        return "needs root (debootstrap, chroot, binfmt)"
    return None


@pytest.mark.arm
@pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")
def test_device_runtime_on_emulated_aarch64(tmp_path):
    env = {**os.environ, "ARCH_INPUT_SIZE": os.environ.get("ARCH_INPUT_SIZE", "64"),
           "ARM_RESULTS_FILE": str(tmp_path / "arm.md")}
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=3600, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "PASS" in result.stdout and "aarch64" in result.stdout
    assert "meaningless" in result.stdout and "PASS" in (tmp_path / "arm.md").read_text()
