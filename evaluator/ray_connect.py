"""The project's one way to reach Ray: probe an address, connect to it, or start a local Ray.

Ray's own connection loop retries for minutes before it gives up, so every command that connects
to a cluster (search, training on Ray, remote latency measurement) probes the address first and
fails in seconds with one line (:class:`RayConnectionError`). A local Ray is started on the
loopback interface only, with the cores this process may use. Ray is imported inside functions.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Iterator
from typing import Any

from evaluator.base import describe_exception
from search_space.errors import ShufflenasError

CONNECT_TIMEOUT_S = 5.0


class RayConnectionError(ShufflenasError):
    """No Ray cluster answers at the given address (or Ray failed to start)."""


def check_ray_address(address: str, timeout: float = 3.0) -> None:
    """Fail in seconds, with one line, when a Ray address does not answer (``auto``/``local``: left to Ray)."""
    if address in ("auto", "local"):
        return
    text = address.split("://", 1)[-1]
    host, _, port_text = text.rpartition(":")
    if not host or not port_text.isdigit():
        raise RayConnectionError(f"bad Ray address {address!r}: use HOST:PORT, ray://HOST:PORT or auto")
    try:
        with socket.create_connection((host, int(port_text)), timeout=timeout):
            pass
    except OSError as exc:
        raise RayConnectionError(f"no Ray cluster answers at {address!r}: "
                                 f"{exc.strerror or type(exc).__name__}") from None


def ray_running() -> bool:
    """Whether this process already holds a Ray connection (without importing Ray)."""
    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


def ensure_ray(address: str | None = None, connect_timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """Make sure Ray is initialised; True when this call started it (so its caller shuts it down).

    ``address``: probe it, then connect; None: start a local Ray on the loopback interface.
    """
    try:
        import ray
    except ImportError:
        raise RayConnectionError("the ray evaluator needs the 'ray' package (pip install ray)") from None
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    try:
        if address:
            check_ray_address(address, connect_timeout)
            host = address.split("://", 1)[-1].rpartition(":")[0]
            if host in ("127.0.0.1", "localhost"):
                options["_node_ip_address"] = "127.0.0.1"
            ray.init(address=address, **options)
        else:
            with _loopback_only():
                ray.init(num_cpus=usable_cpus(), _node_ip_address="127.0.0.1", **options)
    except RayConnectionError:
        raise
    except (ConnectionError, TimeoutError, RuntimeError, ValueError, OSError) as exc:
        where = f"at {address!r}" if address else "locally"
        raise RayConnectionError(f"cannot start or reach Ray {where}: {describe_exception(exc)}") from None
    return True


def release_ray(owned: bool) -> None:
    """Shut Ray down when :func:`ensure_ray` started it here (a caller's Ray is left running)."""
    if owned and ray_running():
        import ray

        ray.shutdown()


@contextlib.contextmanager
def _loopback_only() -> Iterator[None]:
    """Keep a local Ray instance on the loopback interface.

    Ray replaces a ``127.0.0.1`` node address by the host's external address (and its servers then
    listen on every interface) unless it believes multi-node clusters are off on this platform, so
    that switch is turned off while the local instance starts (and restored for later connections).
    """
    from ray._private import ray_constants

    name, flag = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    previous = os.environ.get(name)
    os.environ[name] = "0"  # the processes Ray spawns read it too
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous
        if flag is not None:
            ray_constants.ENABLE_RAY_CLUSTER = flag


def usable_cpus() -> int:
    """Cores this process may run on (respects taskset / container CPU sets)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1

