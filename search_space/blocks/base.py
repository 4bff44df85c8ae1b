"""`UnitSpec`, the contract every unit type meets, and the registry that maps tokens to types.

A unit type is one file in ``search_space/blocks/`` with one ``@register_block`` class. An
architecture names the unit type of each stage by a short token (``v2``, ``v1g3``, ``mb6``, ``xc``):
the family prefix plus its option. From one spec come the three forms every part of the project
needs: the torch module (``module``), the analytic layers the cost models read (``layers``) and the
lookup-table key (``key``).
"""

from __future__ import annotations

import dataclasses
import re
from contextvars import ContextVar
from typing import TYPE_CHECKING, ClassVar

from search_space.blocks.layers import Layer
from search_space.errors import ArchitectureError

if TYPE_CHECKING:
    from torch import nn

_TOKEN = re.compile(r"([a-z]+[a-z0-9]*?)([0-9]*)", re.ASCII)


class UnitError(ArchitectureError):
    """A unit that cannot be built because of one per-stage field of its architecture.

    ``field`` names that field (``widths``, ``split_ratios``, ...), so an :class:`Architecture` can say
    which stage: ``widths[0] = 115 is odd: ...``. A spec may raise a plain :class:`ArchitectureError`
    instead; the architecture then prefixes the stage (``stage3 (v1g3): ...``).
    """

    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field, self.value, self.reason = field, value, reason
        super().__init__(f"{field} = {value} {reason}")

    def at(self, index: int) -> ArchitectureError:
        """The same error, naming the stage's entry of the field."""
        return ArchitectureError(f"{self.field}[{index}] = {self.value} {self.reason}")


@dataclasses.dataclass(frozen=True)
class UnitSpec:
    """One unit of a network: its channels, stride, depthwise kernel and the SE / extra-depthwise options.

    Subclasses add the family's own option (groups, expansion, split ratio) and implement the four
    methods below; ``check`` runs on construction so an impossible unit never exists.
    """

    c_in: int
    c_out: int
    stride: int
    kernel: int = 3
    se: bool = False
    extra_dw: bool = False

    family: ClassVar[str] = ""          # token prefix: "v2", "v1g", "mb", "xc"
    title: ClassVar[str] = ""           # a human name for docs and errors
    activation: ClassVar[str] = "relu"  # "relu6": the stem uses blocks[0]'s, the head blocks[-1]'s
    uses_ratio: ClassVar[bool] = False  # whether the stage's split ratio means something to this unit

    def __post_init__(self) -> None:
        if not _DEFER_CHECK.get():
            self.check()

    @classmethod
    def from_token(cls, token: str, *, c_in: int, c_out: int, stride: int, ratio: float = 0.5, kernel: int = 3,
                   se: bool = False, extra_dw: bool = False) -> UnitSpec:
        raise NotImplementedError

    @property
    def token(self) -> str:
        return self.family

    def check(self) -> None:
        """Raise :class:`ArchitectureError` (one line) when this unit cannot be built."""
        if self.stride not in (1, 2):
            raise ArchitectureError(f"a {self.token} unit takes stride 1 or 2, got {self.stride}")

    def after_stem(self) -> UnitSpec:
        """This unit as the network's first, the one that reads the stem (ShuffleNetV1 leaves its first
        1x1 ungrouped there); most units are the same anywhere."""
        return self

    def module(self) -> nn.Module:
        raise NotImplementedError

    def layers(self, prefix: str, stage: str, h: int, w: int) -> tuple[list[Layer], int, int]:
        raise NotImplementedError

    def key(self, h: int, w: int) -> str:
        raise NotImplementedError


def token_option(token: str, family: str, what: str) -> int:
    """The integer after the family prefix of a token (``mb6`` -> 6, ``v1g3`` -> 3); anything else is one line."""
    body = token[len(family):]
    if not body.isascii() or not body.isdigit() or len(body) > 3:
        raise ArchitectureError(f"block token {token!r}: {family} needs its {what} as digits, e.g. {family}3")
    return int(body)


#: family prefix -> unit class, in registration order (the order docs and errors list them).
BLOCK_FAMILIES: dict[str, type[UnitSpec]] = {}


def register_block(cls: type[UnitSpec]) -> type[UnitSpec]:
    """Class decorator: make a unit type known by its ``family`` prefix."""
    if not cls.family or cls.family in BLOCK_FAMILIES:
        raise ValueError(f"block family {cls.family!r} is empty or registered twice")
    BLOCK_FAMILIES[cls.family] = cls
    _RESOLVED.clear()
    return cls


#: token -> unit class, filled by :func:`family_of` (emptied when a family registers).
_RESOLVED: dict[str, type[UnitSpec]] = {}


def family_of(token: str) -> type[UnitSpec]:
    """The unit class a token names (longest family prefix first); unknown -> one-line error."""
    found = _RESOLVED.get(token) if isinstance(token, str) else None
    if found is not None:
        return found
    _load_builtin_blocks()
    if isinstance(token, str):
        for family in sorted(BLOCK_FAMILIES, key=len, reverse=True):
            if token.startswith(family):
                _RESOLVED[token] = BLOCK_FAMILIES[family]
                return BLOCK_FAMILIES[family]
    known = ", ".join(f"{f} ({c.title})" for f, c in BLOCK_FAMILIES.items())
    raise ArchitectureError(f"unknown block type {token!r} (known families: {known})")


#: Set while a unit is built in two steps (``from_token`` then ``after_stem``): only the final form is checked.
_DEFER_CHECK: ContextVar[bool] = ContextVar("defer_unit_check", default=False)


def unit_spec(token: str, *, c_in: int, c_out: int, stride: int, ratio: float = 0.5, kernel: int = 3,
              se: bool = False, extra_dw: bool = False, after_stem: bool = False) -> UnitSpec:
    """Build the spec of one unit from its stage's token and shape.

    ``after_stem``: the network's first unit, the one that reads the stem (:meth:`UnitSpec.after_stem`);
    it is checked in that form only (a ShuffleNetV1 unit's ungrouped first 1x1 takes any input width).
    """
    cls = family_of(token)
    kwargs = dict(c_in=c_in, c_out=c_out, stride=stride, ratio=ratio, kernel=kernel, se=se, extra_dw=extra_dw)
    if not after_stem:
        return cls.from_token(token, **kwargs)
    deferred = _DEFER_CHECK.set(True)
    try:
        spec = cls.from_token(token, **kwargs).after_stem()
    finally:
        _DEFER_CHECK.reset(deferred)
    spec.check()
    return spec


def check_token(token: str) -> type[UnitSpec]:
    """The unit class of a well-formed token (``v1g3``: yes; ``v1g5``, ``zz``: one-line error), whatever
    the shapes it will be used at."""
    cls = family_of(token)
    deferred = _DEFER_CHECK.set(True)
    try:
        cls.from_token(token, c_in=8, c_out=8, stride=1)
    finally:
        _DEFER_CHECK.reset(deferred)
    return cls


def block_choices_help() -> str:
    """One line per registered family, for ``--help`` and docs."""
    _load_builtin_blocks()
    return "; ".join(f"{family}: {cls.title}" for family, cls in BLOCK_FAMILIES.items())


def _load_builtin_blocks() -> None:
    """Import the shipped unit files (each registers itself); cheap after the first call."""
    import search_space.blocks  # noqa: F401  (its __init__ imports every built-in block file)
