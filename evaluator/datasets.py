"""Small image data sets for proxy training, all from local files (nothing is downloaded).

Every loader returns :class:`RawImages` (uint8 or [0, 1] float images, NCHW, any one size);
:func:`load_dataset` then applies the shared steps: cap to ``limit`` images (stratified), split off
a validation set where the format has none (stratified, from ``seed``), resize to ``input_size``
(bilinear), normalise per channel with the training statistics. A new data set is one loader
function (in a new module if it is large) plus one line in :data:`DATASETS`.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from search_space.errors import ShufflenasError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
MIN_INPUT_SIZE = 8


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


@dataclasses.dataclass(frozen=True, eq=False)
class DataSplit:
    """Train and validation tensors ready for a model: float32 NCHW, 3 channels, normalised."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    num_classes: int
    classes: tuple[str, ...] = ()
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)

    @property
    def input_size(self) -> int:
        return int(self.train_x.shape[-1])

    @property
    def train_size(self) -> int:
        return int(self.train_x.shape[0])

    @property
    def val_size(self) -> int:
        return int(self.val_x.shape[0])

    def summary(self) -> dict:
        return {"name": self.name, "train": self.train_size, "val": self.val_size, "num_classes": self.num_classes,
                "input_size": self.input_size}

    def __repr__(self) -> str:
        return (f"DataSplit({self.name!r}, train={self.train_size}, val={self.val_size}, "
                f"classes={self.num_classes}, input_size={self.input_size})")


# -- shared steps ---------------------------------------------------------------------------------
def stratified_split(labels: np.ndarray, val_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, val indices): every class with >= 2 images gives about ``val_fraction`` to val."""
    train, val = [], []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_val = int(round(len(idx) * val_fraction)) if len(idx) >= 2 else 0
        n_val = min(max(n_val, 1 if len(idx) >= 2 else 0), len(idx) - 1)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def stratified_subset(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n`` images drawn so every class keeps its share (at least one where possible)."""
    if n >= len(labels):
        return np.arange(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.floor(counts * n / len(labels)).astype(int)
    # hand out the remainder to the classes with the largest fractional parts, then fill by count
    rest = n - int(quota.sum())
    order = np.argsort(-(counts * n / len(labels) - quota), kind="stable")
    for i in order[:rest]:
        quota[i] += 1
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(chosen))


def _to_float(images: np.ndarray) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(images))
    if tensor.dtype == torch.uint8:
        return tensor.float().div_(255.0)
    return tensor.float()


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of an NCHW batch to size x size (antialiased when shrinking)."""
    if images.shape[-2:] == (size, size):
        return images
    shrink = images.shape[-1] > size or images.shape[-2] > size
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)


def _prepare(images: np.ndarray, size: int) -> torch.Tensor:
    x = resize(_to_float(images), size)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[1] != 3:
        raise DatasetError(f"images must have 1 or 3 channels, got {x.shape[1]}")
    return x.contiguous()


# -- loaders --------------------------------------------------------------------------------------
def _load_digits(req: LoadRequest) -> RawImages:
    """scikit-learn's bundled 8x8 digits (1797 images, 10 classes, values 0..16)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    return RawImages(images, bunch.target.astype(np.int64), tuple(str(c) for c in bunch.target_names))


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            data = pickle.load(fh, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError) as exc:
        raise DatasetError(f"{path} is not a CIFAR python batch: {type(exc).__name__}: {exc}") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path} is not a CIFAR python batch: expected a dict, got {type(data).__name__}")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in data.items()}


def _cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    if "data" not in batch or label_key not in batch:
        raise DatasetError(f"{path} is not a CIFAR python batch: keys 'data' and {label_key!r} are required")
    try:
        data = np.asarray(batch["data"], dtype=np.uint8)
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable data or labels ({exc})") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (data.shape[0],):
        raise DatasetError(f"{path}: expected data of shape (N, 3072) and N labels, "
                           f"got {data.shape} and {labels.shape}")
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_dir(req: LoadRequest, folder: str, label: str) -> Path:
    if req.root is None:
        from latency_models.paths import data_home

        base = data_home() / "datasets"
    else:
        base = Path(req.root).expanduser()
    candidates = [base / folder, base]
    for path in candidates:
        if path.is_dir() and any(path.iterdir()):
            return path
    raise DatasetError(f"no {label} batches in {base}: put the python version ('{folder}') there "
                       f"or pass its directory as the data root")


def _cifar(req: LoadRequest, folder: str, train_files: list[str], test_file: str, label_key: str,
           meta_file: str, names_key: str, num_classes: int, label: str) -> RawImages:
    root = _cifar_dir(req, folder, label)
    train_paths = [root / name for name in train_files if (root / name).is_file()]
    if not train_paths:
        raise DatasetError(f"no {label} training batch ({', '.join(train_files)}) in {root}")
    parts = [_cifar_batch(p, label_key) for p in train_paths]
    raw = RawImages(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                    tuple(str(i) for i in range(num_classes)))
    if (root / test_file).is_file():
        raw.val_images, raw.val_labels = _cifar_batch(root / test_file, label_key)
    if (root / meta_file).is_file():
        names = _unpickle(root / meta_file).get(names_key)
        if isinstance(names, list) and len(names) == num_classes:
            raw.classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    for labels in (raw.train_labels, raw.val_labels):
        if labels is not None and len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise DatasetError(f"{label} labels in {root} must lie in 0..{num_classes - 1}")
    return raw


def _load_cifar10(req: LoadRequest) -> RawImages:
    """CIFAR-10 python batches: data_batch_1..5 (training) and test_batch (validation)."""
    return _cifar(req, "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "labels",
                  "batches.meta", "label_names", 10, "CIFAR-10")


def _load_cifar100(req: LoadRequest) -> RawImages:
    """CIFAR-100 python files: train and test with fine labels (100 classes)."""
    return _cifar(req, "cifar-100-python", ["train"], "test", "fine_labels", "meta", "fine_label_names", 100,
                  "CIFAR-100")


def find_classes(root: Path) -> list[str]:
    """Class folders sorted by name, as torchvision's ImageFolder orders them."""
    return sorted(entry.name for entry in os.scandir(root) if entry.is_dir())


def _load_imagefolder(req: LoadRequest) -> RawImages:
    """``root/<class>/<image>`` (png, jpg, ...); each image is decoded as RGB and resized here."""
    from PIL import Image, UnidentifiedImageError

    if req.root is None:
        raise DatasetError("the imagefolder data set needs a root directory (root/<class>/<image>.png)")
    root = Path(req.root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist")
    classes = find_classes(root)
    if not classes:
        raise DatasetError(f"image folder {root} has no class sub-directories (expected root/<class>/<image>)")
    files: list[tuple[Path, int]] = []
    for index, name in enumerate(classes):
        found = []
        for dirpath, _, filenames in sorted(os.walk(root / name, followlinks=True)):
            found += [Path(dirpath) / f for f in sorted(filenames) if f.lower().endswith(IMAGE_EXTENSIONS)]
        if not found:
            raise DatasetError(f"class folder {root / name} has no images ({', '.join(IMAGE_EXTENSIONS)})")
        files += [(path, index) for path in found]
    labels = np.array([label for _, label in files], dtype=np.int64)
    if req.limit is not None and req.limit < len(files):
        keep = stratified_subset(labels, req.limit, np.random.default_rng(req.seed))
        files, labels = [files[i] for i in keep], labels[keep]
    size = req.input_size
    images = np.empty((len(files), 3, size, size), dtype=np.uint8)
    for i, (path, _) in enumerate(files):
        try:
            with Image.open(path) as img:
                rgb = img.convert("RGB").resize((size, size), Image.BILINEAR)
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
            raise DatasetError(f"cannot read image {path}: {exc}") from None
        images[i] = np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)
    return RawImages(images, labels, tuple(classes))


Loader = Callable[[LoadRequest], RawImages]

#: data set name -> loader. A new data set is one loader plus one line here.
DATASETS: dict[str, Loader] = {
    "digits": _load_digits,
    "cifar10": _load_cifar10,
    "cifar100": _load_cifar100,
    "imagefolder": _load_imagefolder,
}


def load_dataset(name: str = "digits", root: str | os.PathLike | None = None, input_size: int = 16, seed: int = 0,
                 val_fraction: float = 0.2, limit: int | None = None) -> DataSplit:
    """Load a data set by name into normalised train/val tensors.

    ``limit`` caps the total number of images (train + val; stratified), which keeps proxy runs
    on large data sets short. Formats with a fixed validation split (CIFAR's test batch) keep it;
    the others split ``val_fraction`` of every class off, from ``seed``.
    """
    key = name.lower().replace("-", "").replace("_", "")
    if key not in DATASETS:
        raise DatasetError(f"unknown data set {name!r} (known: {', '.join(DATASETS)})")
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < MIN_INPUT_SIZE:
        raise DatasetError(f"input_size must be an integer >= {MIN_INPUT_SIZE}, got {input_size!r}")
    if not 0.0 < float(val_fraction) < 1.0:
        raise DatasetError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 4):
        raise DatasetError(f"limit must be an integer >= 4 (or unset), got {limit!r}")
    req = LoadRequest(Path(root) if root is not None else None, input_size, seed, float(val_fraction), limit)
    raw = DATASETS[key](req)
    return _finish(key, raw, req)


def _finish(name: str, raw: RawImages, req: LoadRequest) -> DataSplit:
    rng = np.random.default_rng(req.seed)
    train_img, train_lab = raw.train_images, np.asarray(raw.train_labels, dtype=np.int64)
    if raw.val_images is None or raw.val_labels is None or len(raw.val_labels) == 0:
        if req.limit is not None:
            keep = stratified_subset(train_lab, req.limit, rng)
            train_img, train_lab = train_img[keep], train_lab[keep]
        tr, va = stratified_split(train_lab, req.val_fraction, rng)
        val_img, val_lab = train_img[va], train_lab[va]
        train_img, train_lab = train_img[tr], train_lab[tr]
    else:
        val_img, val_lab = raw.val_images, np.asarray(raw.val_labels, dtype=np.int64)
        if req.limit is not None:
            n_train = max(2, int(round(req.limit * (1 - req.val_fraction))))
            n_val = max(1, req.limit - n_train)
            keep = stratified_subset(train_lab, n_train, rng)
            train_img, train_lab = train_img[keep], train_lab[keep]
            keep = stratified_subset(val_lab, n_val, rng)
            val_img, val_lab = val_img[keep], val_lab[keep]
    if len(np.unique(train_lab)) < 2:
        raise DatasetError(f"data set {name!r} needs at least 2 classes in its training split, "
                           f"found {len(np.unique(train_lab))}")
    if len(val_lab) == 0:
        raise DatasetError(f"data set {name!r} is too small for a validation split ({len(train_lab)} images)")
    train_x, val_x = _prepare(train_img, req.input_size), _prepare(val_img, req.input_size)
    mean = train_x.mean(dim=(0, 2, 3))
    std = train_x.std(dim=(0, 2, 3)).clamp_min(1e-6)
    train_x = ((train_x - mean[None, :, None, None]) / std[None, :, None, None]).contiguous()
    val_x = ((val_x - mean[None, :, None, None]) / std[None, :, None, None]).contiguous()
    return DataSplit(name=name, train_x=train_x, train_y=torch.from_numpy(np.ascontiguousarray(train_lab)),
                     val_x=val_x, val_y=torch.from_numpy(np.ascontiguousarray(val_lab)),
                     num_classes=len(raw.classes), classes=raw.classes,
                     mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std))


def known_datasets() -> list[str]:
    return list(DATASETS)


__all__ = ["DATASETS", "DataSplit", "DatasetError", "LoadRequest", "RawImages", "find_classes", "known_datasets",
           "load_dataset"]
