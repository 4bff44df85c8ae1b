"""Latency backends: one module per runtime, behind :class:`base.LatencyBackend` (see docs/backends.md).

Importing this package imports no runtime: each backend module imports its runtime inside its
methods, and the registry imports a backend module on first use.
"""

from latency_models.measurement.backends.base import (BACKENDS, Backend, LatencyBackend, MeasurementError,
                                                      ModelSource, RunStats, UnknownBackendError, get_backend,
                                                      register_backend)

__all__ = ["BACKENDS", "Backend", "LatencyBackend", "MeasurementError", "ModelSource", "RunStats",
           "UnknownBackendError", "get_backend", "register_backend"]
