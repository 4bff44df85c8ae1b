"""Small image data sets for proxy training, all from local files (nothing is downloaded).

Every loader returns :class:`RawImages` (uint8 or [0, 1] float images, NCHW, any one size);
:func:`load_dataset` then applies the shared steps: cap to ``limit`` images (stratified), split off
a validation set where the format has none (stratified, from ``seed``), resize to ``input_size``
(bilinear), normalise per channel with the training statistics. A new data set is one loader
function (in a new module if it is large) plus one line in :data:`DATASETS` and one in :data:`FLIP_OK`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from evaluator import datasets_idx
from evaluator.datasets_base import DatasetError, LoadRequest, RawImages, check_root
from evaluator.datasets_cifar import load_cifar10, load_cifar100

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
MIN_INPUT_SIZE = 8


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
    images = np.ascontiguousarray(images) if images.flags.writeable else np.array(images)  # torch wants writable
    tensor = torch.from_numpy(images)
    if tensor.dtype == torch.uint8:
        return tensor.float().div_(255.0)
    return tensor.float()


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of an NCHW batch to size x size (antialiased when shrinking)."""
    if images.shape[-2:] == (size, size):
        return images
    shrink = images.shape[-1] > size or images.shape[-2] > size
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)


_CHUNK = 8192  # images converted and resized at a time (bounds the float copy of full-size images)


def _prepare(images: np.ndarray, size: int) -> torch.Tensor:
    """Float images at ``size`` x ``size``, still with their own 1 or 3 channels."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise DatasetError(f"images must have 1 or 3 channels, got shape {tuple(images.shape)}")
    if len(images) <= _CHUNK:
        return resize(_to_float(images), size).contiguous()
    out = torch.empty((len(images), images.shape[1], size, size), dtype=torch.float32)
    for start in range(0, len(images), _CHUNK):
        out[start:start + _CHUNK] = resize(_to_float(images[start:start + _CHUNK]), size)
    return out


def _normalise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Normalised 3-channel copy; grey images are normalised once, into channel 0, then copied (less work)."""
    mean, std = mean[None, :, None, None], std[None, :, None, None]
    if x.shape[1] == 3:
        return ((x - mean) / std).contiguous()
    out = torch.empty((x.shape[0], 3, *x.shape[2:]), dtype=torch.float32)
    torch.sub(x, mean, out=out[:, :1])
    out[:, :1].div_(std)
    out[:, 1:2].copy_(out[:, :1])
    out[:, 2:3].copy_(out[:, :1])
    return out


# -- loaders --------------------------------------------------------------------------------------
def _load_digits(req: LoadRequest) -> RawImages:
    """scikit-learn's bundled 8x8 digits (1797 images, 10 classes, values 0..16)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    return RawImages(images, bunch.target.astype(np.int64), tuple(str(c) for c in bunch.target_names))


def find_classes(root: Path) -> list[str]:
    """Class folders sorted by name, as torchvision's ImageFolder orders them."""
    return sorted(entry.name for entry in os.scandir(root) if entry.is_dir())


def _load_imagefolder(req: LoadRequest) -> RawImages:
    """``root/<class>/<image>`` (png, jpg, ...); each image is decoded as RGB and resized here."""
    from PIL import Image, UnidentifiedImageError

    if req.root is None:
        raise DatasetError("the imagefolder data set needs a root directory (root/<class>/<image>.png)")
    root = check_root(req.root, "image folder")
    classes = find_classes(root)
    if not classes:
        raise DatasetError(f"image folder {root} has no class sub-directories (expected root/<class>/<image>)")
    if len(classes) < 2:  # before decoding anything
        raise DatasetError(f"image folder {root} needs at least 2 classes (class sub-directories), "
                           f"found 1 ({classes[0]!r})")
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
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "imagefolder": _load_imagefolder,
    **{name: datasets_idx.loader(name) for name in datasets_idx.IDX_DATASETS},
}


#: data set name -> whether a horizontally mirrored image still shows its class. It sets the default
#: of the ``flip`` augmentation: off for digits and letters (a mirrored 2 or 7 is another glyph), on
#: for clothes, objects and photographs.
FLIP_OK: dict[str, bool] = {
    "digits": False,
    "cifar10": True,
    "cifar100": True,
    "imagefolder": True,
    **{name: spec.flip_ok for name, spec in datasets_idx.IDX_DATASETS.items()},
}


def _lookup_key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def canonical_name(name: str) -> str:
    """The registry's spelling of ``name`` (``fashion_mnist``, ``FashionMNIST`` -> ``fashion-mnist``)."""
    keys = {_lookup_key(known): known for known in DATASETS}
    key = keys.get(_lookup_key(name)) if isinstance(name, str) else None
    if key is None:
        raise DatasetError(f"unknown data set {name!r} (known: {', '.join(DATASETS)})")
    return key


def flip_ok(name: str) -> bool:
    """Whether the data set ``name`` may be augmented with horizontal flips (see :data:`FLIP_OK`)."""
    return FLIP_OK[canonical_name(name)]


def load_dataset(name: str = "digits", root: str | os.PathLike | None = None, input_size: int = 16, seed: int = 0,
                 val_fraction: float = 0.2, limit: int | None = None) -> DataSplit:
    """Load a data set by name into normalised train/val tensors.

    ``limit`` caps the total number of images (train + val; stratified), which keeps proxy runs
    on large data sets short. Formats with a fixed validation split (CIFAR's test batch) keep it;
    the others split ``val_fraction`` of every class off, from ``seed``.
    """
    key = canonical_name(name)  # "fashion_mnist", "FashionMNIST" work too
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
    if train_x.shape[1] != val_x.shape[1]:
        train_x, val_x = train_x.expand(-1, 3, -1, -1), val_x.expand(-1, 3, -1, -1)
    mean = train_x.mean(dim=(0, 2, 3))
    std = train_x.std(dim=(0, 2, 3)).clamp_min(1e-6)
    train_x, val_x = _normalise(train_x, mean, std), _normalise(val_x, mean, std)
    if len(mean) == 1:
        mean, std = mean.expand(3), std.expand(3)
    return DataSplit(name=name, train_x=train_x, train_y=torch.from_numpy(np.ascontiguousarray(train_lab)),
                     val_x=val_x, val_y=torch.from_numpy(np.ascontiguousarray(val_lab)),
                     num_classes=len(raw.classes), classes=raw.classes,
                     mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std))


def known_datasets() -> list[str]:
    return list(DATASETS)


__all__ = ["DATASETS", "FLIP_OK", "DataSplit", "DatasetError", "LoadRequest", "RawImages", "canonical_name",
           "find_classes", "flip_ok", "known_datasets", "load_dataset"]
