"""The ShuffleNetV2 search space: architectures, presets, sampling and torch models.

Depends on torch only (never on ray or optuna at import time), so it runs alone on a GPU box or
an ARM board.
"""

from search_space.architecture import Architecture, branch_channels
from search_space.errors import ArchitectureError, ShufflenasError
from search_space.model import ShuffleNetV2, build_model, channel_shuffle, count_parameters, stem_layout
from search_space.presets import PAPER_PRESETS, PRESETS, get_preset, preset_name, resolve_arch
from search_space.space import DEFAULT_SPACE, SearchSpace, presets_in

__all__ = [
    "Architecture", "ArchitectureError", "DEFAULT_SPACE", "PAPER_PRESETS", "PRESETS", "SearchSpace",
    "ShuffleNetV2", "ShufflenasError", "branch_channels", "build_model", "channel_shuffle",
    "count_parameters", "get_preset", "preset_name", "presets_in", "resolve_arch", "stem_layout",
]
