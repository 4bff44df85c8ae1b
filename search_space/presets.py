"""Named architectures: the paper's ShuffleNetV2 0.5x/1.0x/1.5x/2.0x (Table 5) and variants.

A registry in the style of timm: ``PRESETS[name]`` is an :class:`Architecture`; ``resolve_arch``
turns anything a user may type (preset name, compact string, path to a JSON file) into one.
"""

from __future__ import annotations

from pathlib import Path

from search_space.architecture import Architecture
from search_space.errors import ArchitectureError

_PAPER_DEPTHS = (4, 8, 4)

#: The paper's Table 5 networks, identical to torchvision's shufflenet_v2_x0_5 ... x2_0.
PAPER_PRESETS: dict[str, Architecture] = {
    "0.5x": Architecture(widths=(48, 96, 192), depths=_PAPER_DEPTHS, conv5=1024),
    "1.0x": Architecture(widths=(116, 232, 464), depths=_PAPER_DEPTHS, conv5=1024),
    "1.5x": Architecture(widths=(176, 352, 704), depths=_PAPER_DEPTHS, conv5=1024),
    "2.0x": Architecture(widths=(244, 488, 976), depths=_PAPER_DEPTHS, conv5=2048),
}

#: Every named architecture. SE-ShuffleNetV2 2.0x is the paper's Table 8 "2.0x + SE" row;
#: the ``*`` variants add the ShuffleNetV2* extra depthwise conv.
PRESETS: dict[str, Architecture] = {
    **PAPER_PRESETS,
    "2.0x-se": PAPER_PRESETS["2.0x"].replace(se=True),
    **{f"{name}*": arch.replace(extra_dw=True) for name, arch in PAPER_PRESETS.items()},
}

_ALIASES = {"x0_5": "0.5x", "x1_0": "1.0x", "x1_5": "1.5x", "x2_0": "2.0x", "0.5": "0.5x", "1.0": "1.0x",
            "1.5": "1.5x", "2.0": "2.0x", "1x": "1.0x", "2x": "2.0x"}


def get_preset(name: str) -> Architecture:
    key = _ALIASES.get(name, name)
    try:
        return PRESETS[key]
    except KeyError:
        raise ArchitectureError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})") from None


def preset_name(arch: Architecture) -> str | None:
    """The preset an architecture equals, if any (used to flag baselines in reports)."""
    for name, preset in PRESETS.items():
        if preset == arch:
            return name
    return None


def _is_file(path: Path) -> bool:
    """``Path.is_file`` that says False (not OSError) for names the OS rejects, e.g. too long."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def resolve_arch(text: str) -> Architecture:
    """A preset name, a compact string or a path to a JSON file -> Architecture.

    Raises :class:`ArchitectureError` with a one-line message for anything else.
    """
    text = text.strip()
    if _ALIASES.get(text, text) in PRESETS:
        return PRESETS[_ALIASES.get(text, text)]
    path = Path(text)
    if text.endswith(".json") or (len(text) < 4096 and _is_file(path)):
        if not _is_file(path):
            raise ArchitectureError(f"architecture file not found: {text}")
        try:
            content = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ArchitectureError(f"cannot read architecture file {text}: {exc}") from None
        try:
            return Architecture.from_json(content)
        except ArchitectureError as exc:
            raise ArchitectureError(f"{text}: {exc}") from None
    if "_" not in text and not text.startswith(("stem", "w")):
        raise ArchitectureError(
            f"{text!r} is not a preset ({', '.join(PRESETS)}), a compact architecture string or a JSON file"
        )
    return Architecture.from_string(text)
