"""What every data-set loader shares: its error, its request, its raw output, and root checks.

Kept apart from :mod:`evaluator.datasets` so that format modules (``datasets_cifar``,
``datasets_idx``) can import it without importing the registry that imports them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from search_space.errors import ShufflenasError


class DatasetError(ShufflenasError):
    """A data set cannot be loaded: unknown name, missing or malformed files, too few classes."""


@dataclasses.dataclass(frozen=True)
class LoadRequest:
    """What a loader is asked for; loaders may use ``input_size``/``limit`` to decode less."""

    root: Path | None
    input_size: int
    seed: int
    val_fraction: float
    limit: int | None


@dataclasses.dataclass
class RawImages:
    """A loader's output before the shared resize / split / normalise steps.

    Images are NCHW with 1 or 3 channels, uint8 (0..255) or float in [0, 1]. ``val_*`` is None
    when the format has no fixed validation split (then one is drawn from ``seed``).
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    classes: tuple[str, ...]
    val_images: np.ndarray | None = None
    val_labels: np.ndarray | None = None


def check_root(root: str | Path, label: str) -> Path:
    """``root`` as a folder that exists, or a one-line error that says what it is instead.

    Checked before anything is decoded, so a typo in a data root fails in milliseconds, not after
    a study has been created.
    """
    path = Path(root).expanduser()
    try:
        if not path.exists():
            raise DatasetError(f"{label} data root {path} does not exist")
        if not path.is_dir():
            raise DatasetError(f"{label} data root {path} is a file, not a folder")
        next(path.iterdir(), None)  # readable?
    except PermissionError:
        raise DatasetError(f"{label} data root {path} cannot be read: permission denied") from None
    except OSError as exc:
        raise DatasetError(f"{label} data root {path} cannot be read: {exc.strerror or exc}") from None
    return path
