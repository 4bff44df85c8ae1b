"""Where shufflenas keeps state between runs: ONNX exports, measurements, calibrations.

Everything lives under one directory, ``$SHUFFLENAS_HOME`` (default ``~/.cache/shufflenas``), so a
user or a test can move or wipe it in one place.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_home() -> Path:
    """The root directory for caches and calibrations (created on first use)."""
    root = Path(os.environ.get("SHUFFLENAS_HOME") or Path.home() / ".cache" / "shufflenas")
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_dir(kind: str) -> Path:
    """A sub-directory for one kind of cached artefact (``onnx``, ``measurements``, ...)."""
    path = data_home() / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def calibration_dir() -> Path:
    """User calibrations written by ``shufflenas latency calibrate`` (shipped ones live in the package)."""
    return cache_dir("calibrations")


SHIPPED_CALIBRATIONS = Path(__file__).resolve().parent / "calibrations"
