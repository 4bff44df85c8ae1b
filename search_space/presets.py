"""Named architectures: the paper's ShuffleNetV2 0.5x/1.0x/1.5x/2.0x (Table 5), variants, and the
other families the paper compares against (Table 8, Figure 1): MobileNetV2, ShuffleNetV1, Xception.

A registry in the style of timm: ``PRESETS[name]`` is an :class:`Architecture`; ``resolve_arch``
turns anything a user may type (preset name, compact string, path to a JSON file) into one.
``FAMILIES`` labels every preset with its family, so a study can compare across families.
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

#: MobileNetV2 (torchvision's ``mobilenet_v2``): t, c, n, s = (1,16,1,1) (6,24,2,2) (6,32,3,2) (6,64,4,2)
#: (6,96,3,1) (6,160,3,2) (6,320,1,1), stem 32 without max-pool, last conv 1280, ReLU6 throughout.
_MOBILENET_V2 = {"depths": (1, 2, 3, 4, 3, 3, 1), "blocks": ("mb1", *("mb6",) * 6), "strides": (1, 2, 2, 2, 1, 2, 1),
                 "stem_pool": False}
#: ShuffleNetV1 g=3 (megvii's layout): stages of 4/8/4 units, bottleneck = width / 4, no head conv.
_SHUFFLENET_V1 = {"depths": _PAPER_DEPTHS, "blocks": ("v1g3",) * 3, "conv5": 0}

#: The other families of the paper's Table 8, as data. Measured with ``shufflenas arch cost NAME --json``
#: (224x224, 1000 classes): params / multiply-adds
#:   mobilenetv2-1.0       3,504,872 / 300.8M (torchvision's mobilenet_v2: 3,504,872; paper 300M)
#:   mobilenetv2-1.4       6,108,776 / 582.2M (torchvision's width_mult=1.4: 6,108,776; paper 585M)
#:   shufflenetv1-1.0x-g3  1,865,728 / 137.5M (ShuffleNetV1 paper 140M)
#:   shufflenetv1-2.0x-g3  5,450,776 / 524.0M (paper 524M)
#:   xception              5,488,728 / 490.3M (the ShuffleNetV2 layout with xc units, widths 208/416/832
#:                         and conv5 1024 chosen for the paper's ~500 MFLOPs "Xception 2x" group)
FAMILY_PRESETS: dict[str, Architecture] = {
    "mobilenetv2-1.0": Architecture(widths=(16, 24, 32, 64, 96, 160, 320), stem=32, conv5=1280, **_MOBILENET_V2),
    # _make_divisible(c * 1.4, 8) of every width; the last conv is 1280 * 1.4
    "mobilenetv2-1.4": Architecture(widths=(24, 32, 48, 88, 136, 224, 448), stem=48, conv5=1792, **_MOBILENET_V2),
    "shufflenetv1-1.0x-g3": Architecture(widths=(240, 480, 960), stem=24, **_SHUFFLENET_V1),
    "shufflenetv1-2.0x-g3": Architecture(widths=(480, 960, 1920), stem=48, **_SHUFFLENET_V1),
    "xception": Architecture(widths=(208, 416, 832), depths=_PAPER_DEPTHS, blocks=("xc",) * 3, conv5=1024),
}
#: Every named architecture. SE-ShuffleNetV2 2.0x is the paper's Table 8 "2.0x + SE" row;
#: the ``*`` variants add the ShuffleNetV2* extra depthwise conv.
PRESETS: dict[str, Architecture] = {
    **PAPER_PRESETS,
    "2.0x-se": PAPER_PRESETS["2.0x"].replace(se=True),
    **{f"{name}*": arch.replace(extra_dw=True) for name, arch in PAPER_PRESETS.items()},
    **FAMILY_PRESETS,
}


#: preset name -> family label (studies group and compare by it).
FAMILIES: dict[str, str] = {
    **{name: "shufflenetv2" for name in PRESETS if name not in FAMILY_PRESETS},
    "mobilenetv2-1.0": "mobilenetv2", "mobilenetv2-1.4": "mobilenetv2",
    "shufflenetv1-1.0x-g3": "shufflenetv1", "shufflenetv1-2.0x-g3": "shufflenetv1",
    "xception": "xception",
}

_ALIASES = {"x0_5": "0.5x", "x1_0": "1.0x", "x1_5": "1.5x", "x2_0": "2.0x", "0.5": "0.5x", "1.0": "1.0x",
            "1.5": "1.5x", "2.0": "2.0x", "1x": "1.0x", "2x": "2.0x", "mobilenetv2": "mobilenetv2-1.0",
            "mobilenet_v2": "mobilenetv2-1.0", "shufflenetv1": "shufflenetv1-1.0x-g3"}


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
