"""The ShuffleNetV2 search space: architectures, presets, sampling and torch models.

Depends on torch only (never on ray or optuna at import time), so it runs alone on a GPU box or
an ARM board. torch itself is imported on first use of a model name (``build_model`` ...), so the
value types, presets, search space and analytic costs start fast (CLI commands, Ray drivers).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from search_space.architecture import Architecture, branch_channels
from search_space.errors import ArchitectureError, ShufflenasError
from search_space.layout import stem_layout
from search_space.presets import PAPER_PRESETS, PRESETS, get_preset, preset_name, resolve_arch
from search_space.space import DEFAULT_SPACE, SearchSpace, presets_in

_MODEL_NAMES = ("ShuffleNetV2", "build_model", "channel_shuffle", "count_parameters")

if TYPE_CHECKING:
    from search_space.model import ShuffleNetV2, build_model, channel_shuffle, count_parameters


def __getattr__(name: str) -> Any:
    """Load the torch model module on first use of one of its names (PEP 562)."""
    if name in _MODEL_NAMES or name == "model":
        module = importlib.import_module("search_space.model")
        return module if name == "model" else getattr(module, name)
    raise AttributeError(f"module 'search_space' has no attribute {name!r}")


__all__ = [
    "Architecture", "ArchitectureError", "DEFAULT_SPACE", "PAPER_PRESETS", "PRESETS", "SearchSpace",
    "ShuffleNetV2", "ShufflenasError", "branch_channels", "build_model", "channel_shuffle",
    "count_parameters", "get_preset", "preset_name", "presets_in", "resolve_arch", "stem_layout",
]
