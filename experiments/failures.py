"""Why a trial failed: the candidate itself, or the environment it ran in.

A candidate's own failure (a build error, NaN loss, its own huge allocation, a worker it killed, a
time-out) is a result: the trial counts as finished, so a broken region of the space cannot loop
forever. A failure from outside the candidate (the data set vanished, a worker cannot import a
package, no CUDA device, the machine ran out of memory, the disk is full) says nothing about the
architecture: such a trial is marked ``failure_kind = "environment"``, its parameters are queued
again and it does not count toward ``trials`` (nor use up a preset).
"""

from __future__ import annotations

from typing import Literal

from experiments.trial_record import FAILURE_KIND as FAILURE_KIND_ATTR  # noqa: F401 - its name before trial_record

FailureKind = Literal["candidate", "environment"]
#: Consecutive environment failures after which the driver stops with one line.
ENVIRONMENT_FAILURE_LIMIT = 3

#: Exception type names (as in ``Type: message``) that come from the environment.
ENVIRONMENT_TYPES = ("DatasetError", "ModuleNotFoundError", "ImportError", "RaySystemError",
                     "LocalRayletDiedError", "NodeDiedError")
#: Message fragments that come from the environment, whatever the type.
ENVIRONMENT_TEXTS = ("running low on memory",           # Ray's memory monitor killed the worker
                     "No space left on device", "Torch not compiled with CUDA", "no CUDA GPUs are available",
                     "CUDA driver", "Found no NVIDIA driver", "cannot import name", "No module named")


def failure_kind(reason: str | BaseException) -> FailureKind:
    """Classify a failure from its exception or its ``Type: message`` text."""
    if isinstance(reason, BaseException):
        names = {cls.__name__ for cls in type(reason).__mro__}
        if names & set(ENVIRONMENT_TYPES):
            return "environment"
        text = f"{type(reason).__name__}: {reason}"
    else:
        text = reason
    if any(f"{name}:" in text or text.rstrip().endswith(name) for name in ENVIRONMENT_TYPES):
        return "environment"
    if any(fragment in text for fragment in ENVIRONMENT_TEXTS):
        return "environment"
    return "candidate"
