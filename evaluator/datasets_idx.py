"""MNIST-format (IDX) data sets: MNIST, Fashion-MNIST, Kuzushiji-MNIST and the EMNIST splits.

An IDX file is a 4-byte magic number (``0x00000803``: unsigned bytes in 3 dimensions, the images;
``0x00000801``: 1 dimension, the labels), one big-endian uint32 per dimension, then the bytes. Each
data set is four files, raw or gzipped: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (EMNIST: ``emnist-<split>-train-images-...``).
The t10k files are the fixed validation split. Files are decoded with ``numpy.frombuffer`` (the
full 70,000 images in well under a second); a bad magic number, a truncated file, image and label
counts that differ, or a label out of range is a one-line :class:`DatasetError` naming the file.
"""

from __future__ import annotations

import dataclasses
import zlib
from pathlib import Path

import numpy as np

from evaluator.datasets_base import DatasetError, LoadRequest, RawImages, check_root

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
#: Refuse an IDX file larger than this, raw or unpacked (MNIST's training images are 47 MB).
MAX_IDX_BYTES = 1 << 31
#: Where Debian's packages put their copies (``apt-get install dataset-fashion-mnist``).
SYSTEM_DATASETS = Path("/usr/share/datasets")

DIGITS = tuple(str(i) for i in range(10))
FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_UPPER = tuple(chr(c) for c in range(ord("A"), ord("Z") + 1))
_LOWER = tuple(chr(c) for c in range(ord("a"), ord("z") + 1))
_MERGED = DIGITS + _UPPER + tuple("abdefghnqrt")


@dataclasses.dataclass(frozen=True)
class IdxSpec:
    """One IDX data set: its files, class names, and where to look when no root is given."""

    name: str
    label: str
    classes: tuple[str, ...]
    folder: str  # under $SHUFFLENAS_HOME/datasets and /usr/share/datasets
    torch_folder: str  # torchvision's layout: <root>/<torch_folder>/raw/
    prefix: str = ""  # "emnist-digits-" for EMNIST
    label_offset: int = 0  # EMNIST letters number their classes from 1
    transposed: bool = False  # EMNIST stores every image transposed
    apt_package: str | None = None
    #: a mirrored image is still an image of its class (clothes: yes; digits, letters: a flipped 2 is another glyph)
    flip_ok: bool = False

    def file_names(self) -> dict[str, str]:
        """The four file names (without ``.gz``); EMNIST calls its validation files ``test``, not ``t10k``."""
        val = f"{self.prefix}test" if self.prefix else "t10k"
        return {"train_images": f"{self.prefix}train-images-idx3-ubyte",
                "train_labels": f"{self.prefix}train-labels-idx1-ubyte",
                "val_images": f"{val}-images-idx3-ubyte", "val_labels": f"{val}-labels-idx1-ubyte"}


def _emnist(split: str, classes: tuple[str, ...], offset: int = 0) -> IdxSpec:
    return IdxSpec(f"emnist-{split}", f"EMNIST ({split})", classes, "emnist", "EMNIST", f"emnist-{split}-",
                   offset, True)


IDX_DATASETS: dict[str, IdxSpec] = {spec.name: spec for spec in (
    IdxSpec("mnist", "MNIST", DIGITS, "mnist", "MNIST"),
    IdxSpec("fashion-mnist", "Fashion-MNIST", FASHION, "fashion-mnist", "FashionMNIST",
            apt_package="dataset-fashion-mnist", flip_ok=True),
    IdxSpec("kmnist", "Kuzushiji-MNIST", DIGITS, "kmnist", "KMNIST"),
    _emnist("digits", DIGITS), _emnist("mnist", DIGITS), _emnist("letters", _UPPER, 1),
    _emnist("balanced", _MERGED), _emnist("bymerge", _MERGED), _emnist("byclass", DIGITS + _UPPER + _LOWER),
)}


# -- reading one file -------------------------------------------------------------------------------
def _file_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped for ``.gz`` in one call with a cap (a gzip bomb stops at the cap)."""
    if path.stat().st_size > MAX_IDX_BYTES:
        raise DatasetError(f"{path} is larger than the {MAX_IDX_BYTES} bytes allowed for an IDX file")
    blob = path.read_bytes()
    if not path.name.endswith(".gz"):
        return blob
    inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    data = inflate.decompress(blob, MAX_IDX_BYTES + 1)
    if len(data) > MAX_IDX_BYTES:
        raise DatasetError(f"{path} unpacks to more than the {MAX_IDX_BYTES} bytes allowed for an IDX file")
    if not inflate.eof:
        raise DatasetError(f"{path} is a truncated gzip file")
    return data


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """The uint8 array in one IDX file of ``ndim`` dimensions (3: images, 1: labels), raw or ``.gz``."""
    what = "images" if ndim == 3 else "labels"
    expected_magic = 0x0800 | ndim
    try:
        blob = _file_bytes(path)
    except zlib.error as exc:
        raise DatasetError(f"{path} is not a readable gzip file: {' '.join(str(exc).split())}") from None
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(blob) < 4:
        raise DatasetError(f"{path} is truncated: {len(blob)} bytes, no IDX header")
    magic = int.from_bytes(blob[:4], "big")
    if magic != expected_magic:
        raise DatasetError(f"{path} is not an IDX {what} file: magic number 0x{magic:08x}, "
                           f"expected 0x{expected_magic:08x}")
    start = 4 + 4 * ndim
    if len(blob) < start:
        raise DatasetError(f"{path} is truncated inside its header")
    dims = tuple(int.from_bytes(blob[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    if 0 in dims:
        raise DatasetError(f"{path} holds no {what} (dimensions {dims})")
    size = int(np.prod(dims, dtype=object))
    if len(blob) - start < size:
        raise DatasetError(f"{path} is truncated: its header announces {size} bytes of {what} "
                           f"(dimensions {dims}), the file holds {len(blob) - start}")
    if len(blob) - start > size:
        raise DatasetError(f"{path} has {len(blob) - start - size} bytes after the {size} its header announces "
                           f"(dimensions {dims})")
    return np.frombuffer(blob, dtype=np.uint8, count=size, offset=start).reshape(dims)


# -- finding the four files -----------------------------------------------------------------------
def _find(folder: Path, name: str) -> Path | None:
    """``name`` in ``folder``, raw or gzipped, also as ``train-images.idx3-ubyte`` (some mirrors)."""
    dotted = name.replace("-idx", ".idx")
    for candidate in (name, f"{name}.gz", dotted, f"{dotted}.gz"):
        path = folder / candidate
        if path.is_file():
            return path
    return None


def _search_folders(spec: IdxSpec, root: Path | None) -> list[Path]:
    if root is not None:
        bases = [root, root / spec.folder]
    else:
        from latency_models.paths import home_path

        bases = [home_path() / "datasets" / spec.folder, SYSTEM_DATASETS / spec.folder]
    folders = []
    for base in bases:
        folders += [base, base / "raw", base / spec.torch_folder / "raw", base / "gzip"]
    return folders


def find_files(spec: IdxSpec, root: Path | None) -> dict[str, Path]:
    """The four files of ``spec``: from the first folder holding its training images."""
    names = spec.file_names()
    folders = _search_folders(spec, root)
    for folder in folders:
        first = _find(folder, names["train_images"])
        if first is None:
            continue
        found = {key: _find(folder, name) for key, name in names.items()}
        missing = [names[key] for key, path in found.items() if path is None]
        if missing:
            raise DatasetError(f"{spec.label} in {folder} is incomplete: no {', '.join(missing)} (raw or .gz)")
        return found  # type: ignore[return-value]
    where = ", ".join(str(f) for f in dict.fromkeys(f for f in folders if f.name not in ("raw", "gzip")))
    hint = (f"install it with `apt-get install {spec.apt_package}`, or pass" if spec.apt_package and root is None
            else "put the four files there, or pass")
    raise DatasetError(f"no {spec.label} files ({names['train_images']}[.gz] and the other three) in {where}: "
                       f"{hint} their folder as the data root (--data-root, or data_root in [proxy])")


# -- the loader -----------------------------------------------------------------------------------
def _pair(spec: IdxSpec, images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
    if len(images) != len(labels):
        raise DatasetError(f"{labels_path} has {len(labels)} labels but {images_path} has {len(images)} images")
    labels = labels.astype(np.int64) - spec.label_offset
    if labels.min() < 0 or labels.max() >= len(spec.classes):
        bad = int(labels.min() if labels.min() < 0 else labels.max()) + spec.label_offset
        raise DatasetError(f"{labels_path}: label {bad} is out of range for {spec.label} "
                           f"({spec.label_offset}..{len(spec.classes) - 1 + spec.label_offset})")
    if spec.transposed:
        images = images.transpose(0, 2, 1)
    return np.ascontiguousarray(images[:, None, :, :]), labels


def load_idx(spec: IdxSpec, req: LoadRequest) -> RawImages:
    """``spec``'s training files and its fixed validation (t10k / test) files as :class:`RawImages`."""
    root = check_root(req.root, spec.label) if req.root is not None else None
    files = find_files(spec, root)
    train_x, train_y = _pair(spec, files["train_images"], files["train_labels"])
    val_x, val_y = _pair(spec, files["val_images"], files["val_labels"])
    if train_x.shape[1:] != val_x.shape[1:]:
        raise DatasetError(f"{files['val_images']} holds {val_x.shape[2]}x{val_x.shape[3]} images but "
                           f"{files['train_images']} holds {train_x.shape[2]}x{train_x.shape[3]}")
    return RawImages(train_x, train_y, spec.classes, val_x, val_y)


def loader(name: str):
    """The :data:`evaluator.datasets.DATASETS` entry for the IDX data set ``name``."""
    spec = IDX_DATASETS[name]

    def load(req: LoadRequest) -> RawImages:
        return load_idx(spec, req)

    load.__doc__ = f"{spec.label} from IDX files (raw or .gz); t10k/test files validate."
    return load
