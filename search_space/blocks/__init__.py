"""Unit types as specs: one file per block type, registered by its token prefix.

Built-in families: ``v2`` (ShuffleNetV2), ``v1g<g>`` (ShuffleNetV1, g groups), ``mb<t>``
(MobileNetV2 inverted residual, expansion t), ``xc`` (Xception-style, SPOS's choice block).
Adding one: a new file with a ``@register_block`` :class:`~search_space.blocks.base.UnitSpec`
subclass, imported below (docs/ARCHITECTURE.md walks through the MobileNetV2 block).
"""

from __future__ import annotations

from search_space.blocks.base import (
    BLOCK_FAMILIES,
    UnitError,
    UnitSpec,
    block_choices_help,
    check_token,
    family_of,
    register_block,
    unit_spec,
)
from search_space.blocks.layers import COST_COLUMNS, Layer

# Built-in unit types: each import registers one family, in the order docs and errors list them.
for _name in ("shufflenet_v2", "shufflenet_v1", "mobilenet_v2", "xception"):
    __import__(f"search_space.blocks.{_name}")

__all__ = ["BLOCK_FAMILIES", "COST_COLUMNS", "Layer", "UnitError", "UnitSpec", "block_choices_help", "check_token", "family_of",
           "register_block", "unit_spec"]
