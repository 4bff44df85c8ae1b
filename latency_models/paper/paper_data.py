"""The ShuffleNet V2 paper's measured speeds (Tables 1-4 and 8) as data.

Transcribed from Ma et al., ShuffleNet V2 (ECCV 2018), Tables 1-4 and 8. GPU figures are batches
per second, ARM figures images per second (higher = faster); :func:`to_ms` turns either into
milliseconds per batch, the unit every latency model in this project predicts.

Batch sizes: Table 8 states batch 8 on the GPU and 1 on ARM. The guideline tables do not say;
they are read here at batch 1 on both devices, because at batch 8 Table 1's x4 row would mean
~30 T multiply-adds/s, over five times a GTX 1080Ti's fp32 peak (~5.6 T multiply-adds/s).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Device = Literal["gpu", "arm"]
DEVICES: tuple[Device, ...] = ("gpu", "arm")

UNITS: dict[str, str] = {"gpu": "batches/s", "arm": "images/s"}
#: Batch of the whole-network figures (Table 8).
NETWORK_BATCH: dict[str, int] = {"gpu": 8, "arm": 1}
#: Batch assumed for the guideline micro-benchmarks (Tables 1-4), see the module docstring.
MICRO_BATCH: dict[str, int] = {"gpu": 1, "arm": 1}
MICRO_INPUT = 56
MICRO_BLOCKS = 10
NETWORK_INPUT = 224
SCALES: tuple[str, ...] = ("x1", "x2", "x4")
TABLES: tuple[str, ...] = ("g1", "g2", "g3", "g4", "t8")
MICRO_TABLES: tuple[str, ...] = ("g1", "g2", "g3", "g4")

#: Table 1 (G1): ratio -> {device: ((c1, c2) at x1, (x1, x2, x4) speeds)}.
TABLE1: dict[str, dict[str, tuple[tuple[int, int], tuple[float, float, float]]]] = {
    "1:1": {"gpu": ((128, 128), (1480, 723, 232)), "arm": ((32, 32), (76.2, 21.7, 5.3))},
    "1:2": {"gpu": ((90, 180), (1296, 586, 206)), "arm": ((22, 44), (72.9, 20.5, 5.1))},
    "1:6": {"gpu": ((52, 312), (876, 489, 189)), "arm": ((13, 78), (69.1, 17.9, 4.6))},
    "1:12": {"gpu": ((36, 432), (748, 392, 163)), "arm": ((9, 108), (57.6, 15.1, 4.4))},
}

#: Table 2 (G2): groups -> {device: (c at x1, (x1, x2, x4) speeds)}.
TABLE2: dict[int, dict[str, tuple[int, tuple[float, float, float]]]] = {
    1: {"gpu": (128, (2451, 1289, 437)), "arm": (64, (40.0, 10.2, 2.3))},
    2: {"gpu": (180, (1725, 873, 341)), "arm": (90, (35.0, 9.5, 2.2))},
    4: {"gpu": (256, (1026, 644, 338)), "arm": (128, (32.9, 8.7, 2.1))},
    8: {"gpu": (360, (634, 445, 230)), "arm": (180, (27.8, 7.5, 1.8))},
}

#: Table 3 (G3): channels of the 1-fragment network per column, and speeds per structure.
TABLE3_CHANNELS: dict[str, tuple[int, int, int]] = {"gpu": (128, 256, 512), "arm": (64, 128, 256)}
TABLE3: dict[str, dict[str, tuple[float, float, float]]] = {
    "1-fragment": {"gpu": (2446, 1274, 434), "arm": (40.2, 10.1, 2.3)},
    "2-fragment-series": {"gpu": (1790, 909, 336), "arm": (38.6, 10.1, 2.2)},
    "4-fragment-series": {"gpu": (752, 745, 349), "arm": (38.4, 10.1, 2.3)},
    "2-fragment-parallel": {"gpu": (1537, 803, 320), "arm": (33.4, 9.1, 2.2)},
    "4-fragment-parallel": {"gpu": (691, 572, 292), "arm": (35.0, 8.4, 2.1)},
}

#: Table 4 (G4): channels of the bottleneck unit per column, speeds per (ReLU, shortcut).
TABLE4_CHANNELS: dict[str, tuple[int, int, int]] = {"gpu": (32, 64, 128), "arm": (32, 64, 128)}
TABLE4: dict[tuple[bool, bool], dict[str, tuple[float, float, float]]] = {
    (True, True): {"gpu": (2427, 2066, 1436), "arm": (56.7, 16.9, 5.0)},
    (True, False): {"gpu": (2647, 2256, 1735), "arm": (61.9, 18.8, 5.2)},
    (False, True): {"gpu": (2672, 2121, 1458), "arm": (57.3, 18.2, 5.1)},
    (False, False): {"gpu": (2842, 2376, 1782), "arm": (66.3, 20.2, 5.4)},
}

#: Table 8: model -> (project preset or None, MFLOPs, top-1 error %, GPU batches/s, ARM images/s).
TABLE8: dict[str, tuple[str | None, float, float | None, float, float]] = {
    "ShuffleNetV2 0.5x": ("0.5x", 41, 39.7, 417, 57.0),
    "ShuffleNetV2 1.0x": ("1.0x", 146, 30.6, 341, 24.4),
    "ShuffleNetV2 1.5x": ("1.5x", 299, 27.4, 255, 11.8),
    "ShuffleNetV2 2.0x": ("2.0x", 591, 25.1, 217, 6.7),
    "ShuffleNetV2 2.0x + SE": ("2.0x-se", 597, 24.6, 161, 5.6),
    "MobileNetV2 1.0": (None, 300, 28.0, 180, 8.9),
    "MobileNetV2 1.4": (None, 585, 25.3, 137, 5.4),
    "ShuffleNetV1 2x (g=3)": (None, 500, None, 133, 6.4),
    "Xception 2x": (None, 500, None, 174, 6.7),
}


#: Table 8's other families -> the preset of this project that stands for them (see search_space.presets).
#: ``network_speeds`` leaves them out: the shipped calibrations were fitted on the ShuffleNetV2 rows only,
#: so these rows stay out-of-sample checks. (ShuffleNetV1 2x g=3 is 524 MFLOPs in the ShuffleNetV1 paper;
#: the Xception preset is the ShuffleNetV2 layout with Xception units sized to 490 MFLOPs.)
TABLE8_COMPARISON_PRESETS: dict[str, str] = {
    "MobileNetV2 1.0": "mobilenetv2-1.0",
    "MobileNetV2 1.4": "mobilenetv2-1.4",
    "ShuffleNetV1 2x (g=3)": "shufflenetv1-2.0x-g3",
    "Xception 2x": "xception",
}


@dataclass(frozen=True)
class Table8Row:
    """One Table 8 network with the preset that builds it here; ``calibrated``: in the shipped fits."""

    model: str
    preset: str
    mflops: float
    top1_err: float | None
    gpu: float               # batches/s at batch 8
    arm: float               # images/s at batch 1
    calibrated: bool


def table8_rows() -> list[Table8Row]:
    """Every Table 8 row this project can build (all nine), in the paper's order."""
    rows = []
    for model, (preset, mflops, err, gpu, arm) in TABLE8.items():
        name = preset or TABLE8_COMPARISON_PRESETS.get(model)
        if name is not None:
            rows.append(Table8Row(model, name, float(mflops), err, float(gpu), float(arm), preset is not None))
    return rows


def to_ms(value: float) -> float:
    """Paper speed (batches/s on GPU, images/s at batch 1 on ARM) -> milliseconds per batch."""
    return 1000.0 / float(value)


def network_speeds(device: Device) -> dict[str, float]:
    """Table 8 speeds of the networks this project can build, by preset name."""
    column = 3 if device == "gpu" else 4
    return {row[0]: float(row[column]) for row in TABLE8.values() if row[0] is not None}


def check_device(device: str) -> Device:
    """Validate a device name ("gpu" or "arm")."""
    from search_space.errors import ShufflenasError

    if device not in DEVICES:
        raise ShufflenasError(f"unknown paper device {device!r} (known: gpu, arm)")
    return device  # type: ignore[return-value]
