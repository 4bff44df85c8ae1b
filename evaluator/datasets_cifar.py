"""CIFAR-10 / CIFAR-100 "python version" batches, read with a restricted unpickler.

A CIFAR batch is a pickle, and a plain ``pickle.load`` runs whatever a crafted file asks for.
:class:`CifarUnpickler` resolves only the few globals a real batch refers to (numpy's array and
scalar reconstructors, and ``_codecs.encode`` for latin-1 only, which Python 3's protocol 2 uses
for bytes); anything else is refused with a one-line :class:`DatasetError` before it is called.
"""

from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from evaluator.datasets_base import DatasetError, LoadRequest, RawImages, check_root


def _latin1_encode(text: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol 2 uses it for bytes (``encode(str, "latin1")``), and nothing else."""
    if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1" or errors != "strict":
        raise pickle.UnpicklingError("_codecs.encode is allowed only as encode(str, 'latin1')")
    return text.encode("latin-1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric

    table: dict[tuple[str, str], Any] = {("_codecs", "encode"): _latin1_encode,
                                         ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):  # Python 2 / numpy < 2 spell it .core
        table[(module, "_reconstruct")] = multiarray._reconstruct
        table[(module, "scalar")] = multiarray.scalar
    for module in ("numpy.core.numeric", "numpy._core.numeric"):  # protocol 5 arrays
        table[(module, "_frombuffer")] = numeric._frombuffer
    return table


class CifarUnpickler(pickle.Unpickler):
    """An unpickler that builds dicts, lists, bytes, str, numbers and numpy arrays, and nothing else."""

    _ALLOWED = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name} (a CIFAR batch holds "
                                         "only dicts, lists, bytes and numpy arrays)") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing a persistent id (not part of a CIFAR batch)")


def unpickle(path: Path) -> dict:
    """One CIFAR python file as a dict with str keys (one-line error if it is not one)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError,
            KeyError, LookupError, MemoryError, OverflowError, RecursionError) as exc:
        message = " ".join(str(exc).split()) or "malformed"
        raise DatasetError(f"{path} is not a CIFAR python batch: {type(exc).__name__}: {message}") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path} is not a CIFAR python batch: expected a dict, got {type(data).__name__}")
    return {(k.decode("latin-1") if isinstance(k, bytes) else k): v for k, v in data.items()}


def _cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    batch = unpickle(path)
    if "data" not in batch or label_key not in batch:
        raise DatasetError(f"{path} is not a CIFAR python batch: keys 'data' and {label_key!r} are required")
    try:
        data = np.asarray(batch["data"], dtype=np.uint8)
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise DatasetError(f"{path}: unreadable data or labels ({exc})") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (data.shape[0],):
        raise DatasetError(f"{path}: expected data of shape (N, 3072) and N labels, "
                           f"got {data.shape} and {labels.shape}")
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_dir(req: LoadRequest, folder: str, label: str) -> Path:
    if req.root is None:
        from latency_models.paths import home_path

        base = home_path() / "datasets"
    else:
        base = check_root(req.root, label)
    for path in (base / folder, base):
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
        names = unpickle(root / meta_file).get(names_key)
        if isinstance(names, list) and len(names) == num_classes:
            raw.classes = tuple(n.decode("latin-1") if isinstance(n, bytes) else str(n) for n in names)
    for labels in (raw.train_labels, raw.val_labels):
        if labels is not None and len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise DatasetError(f"{label} labels in {root} must lie in 0..{num_classes - 1}")
    return raw


def load_cifar10(req: LoadRequest) -> RawImages:
    """CIFAR-10 python batches: data_batch_1..5 (training) and test_batch (validation)."""
    return _cifar(req, "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "labels",
                  "batches.meta", "label_names", 10, "CIFAR-10")


def load_cifar100(req: LoadRequest) -> RawImages:
    """CIFAR-100 python files: train and test with fine labels (100 classes)."""
    return _cifar(req, "cifar-100-python", ["train"], "test", "fine_labels", "meta", "fine_label_names", 100,
                  "CIFAR-100")
