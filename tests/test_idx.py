"""IDX (MNIST-format) data sets through the real loader, on files written here (raw and gzipped)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluator import datasets_idx
from evaluator.datasets import DATASETS, DatasetError, load_dataset
from evaluator.datasets_idx import FASHION, read_idx

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: magic 0x0000080N, big-endian dimensions, the bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    return struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write(path: Path, data: bytes, gz: bool) -> Path:
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def make_set(root: Path, n_train: int = 40, n_val: int = 20, classes: int = 10, gz: bool = False, size: int = 28,
             prefix: str = "", val_part: str = "t10k", label_offset: int = 0, seed: int = 0) -> dict:
    """Four IDX files in ``root``; returns the arrays written."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {}
    for part, n in (("train", n_train), (val_part, n_val)):
        images = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
        labels = (np.arange(n) % classes + label_offset).astype(np.uint8)
        write(root / f"{prefix}{part}-images-idx3-ubyte", idx_bytes(images), gz)
        write(root / f"{prefix}{part}-labels-idx1-ubyte", idx_bytes(labels), gz)
        arrays[part] = (images, labels)
    return arrays


def unnormalise(split, x: torch.Tensor) -> np.ndarray:
    return (x.numpy() * np.array(split.std)[:, None, None] + np.array(split.mean)[:, None, None]) * 255


def test_registry_has_the_idx_sets():
    assert {"mnist", "fashion-mnist", "kmnist", "emnist-digits", "emnist-letters", "emnist-balanced"} <= set(DATASETS)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_raw_and_gzipped(tmp_path, gz):
    arrays = make_set(tmp_path / "mnist", gz=gz)
    split = load_dataset("mnist", root=tmp_path / "mnist", input_size=28)
    assert (split.train_size, split.val_size, split.num_classes) == (40, 20, 10)
    assert split.classes == tuple("0123456789") and split.train_x.shape[1:] == (3, 28, 28)
    # the t10k files are the validation split, pixel for pixel, in order
    images, labels = arrays["t10k"]
    assert torch.equal(split.val_y, torch.from_numpy(labels.astype(np.int64)))
    assert np.allclose(unnormalise(split, split.val_x[3]), images[3][None].repeat(3, 0), atol=1e-3)
    assert torch.equal(split.train_x[:, 0], split.train_x[:, 2])  # grey replicated to 3 channels


def test_fashion_names_resize_limit_and_folders(tmp_path):
    make_set(tmp_path / "data" / "FashionMNIST" / "raw", n_train=100, n_val=50, gz=True)  # torchvision's layout
    split = load_dataset("fashion-mnist", root=tmp_path / "data", input_size=16)
    assert split.classes == FASHION and split.classes[0] == "T-shirt/top" and split.classes[9] == "Ankle boot"
    assert split.input_size == 16 and split.name == "fashion-mnist"
    small = load_dataset("fashion_mnist", root=tmp_path / "data", input_size=16, limit=40, val_fraction=0.25)
    assert (small.train_size, small.val_size) == (30, 10)
    assert small.train_y.bincount().tolist() == [3] * 10 and small.val_y.bincount().tolist() == [1] * 10


def test_default_folder_under_the_state_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("SHUFFLENAS_HOME", str(tmp_path / "home"))
    make_set(tmp_path / "home" / "datasets" / "kmnist")
    assert load_dataset("kmnist", input_size=28).train_size == 40


def test_missing_files_name_the_package_and_the_data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("SHUFFLENAS_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(datasets_idx, "SYSTEM_DATASETS", tmp_path / "usr-share-datasets")  # a machine without it
    with pytest.raises(DatasetError) as info:
        load_dataset("fashion-mnist")
    message = str(info.value)
    assert "\n" not in message and "apt-get install dataset-fashion-mnist" in message and "--data-root" in message
    assert str(tmp_path / "usr-share-datasets" / "fashion-mnist") in message
    with pytest.raises(DatasetError, match="no MNIST files .*--data-root") as info:
        load_dataset("mnist")
    assert "apt-get" not in str(info.value)
    assert not (tmp_path / "home").exists()  # looking created nothing


def test_an_incomplete_set_names_what_is_missing(tmp_path):
    make_set(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetError, match="incomplete: no t10k-labels-idx1-ubyte"):
        load_dataset("mnist", root=tmp_path)


def _damage(root: Path, name: str, data: bytes, gz: bool = False) -> None:
    for old in root.glob(f"{name}*"):
        old.unlink()
    write(root / name, data, gz)


GOOD_IMAGES = idx_bytes(np.zeros((40, 28, 28), np.uint8))


@pytest.mark.parametrize("name, data, match", [
    ("train-images-idx3-ubyte", idx_bytes(np.zeros(40, np.uint8)), "not an IDX images file: magic number 0x00000801"),
    ("train-labels-idx1-ubyte", GOOD_IMAGES, "not an IDX labels file: magic number 0x00000803"),
    ("train-images-idx3-ubyte", b"\x00\x00\x08", "truncated: 3 bytes, no IDX header"),
    ("train-images-idx3-ubyte", GOOD_IMAGES[:10], "truncated inside its header"),
    ("train-images-idx3-ubyte", GOOD_IMAGES[:-5], "truncated: its header announces 31360 bytes"),
    ("train-images-idx3-ubyte", GOOD_IMAGES + b"xx", "has 2 bytes after the 31360"),
    ("train-images-idx3-ubyte", idx_bytes(np.zeros((0, 28, 28), np.uint8)), "holds no images"),
    ("train-images-idx3-ubyte", struct.pack(">IIII", 0x803, 2**32 - 1, 2**32 - 1, 2**32 - 1), "truncated"),
    ("train-labels-idx1-ubyte", idx_bytes(np.zeros(39, np.uint8)), "has 39 labels but .* has 40 images"),
    ("t10k-labels-idx1-ubyte", idx_bytes(np.full(20, 10, np.uint8)), "label 10 is out of range for MNIST .0..9."),
    ("t10k-images-idx3-ubyte", idx_bytes(np.zeros((20, 14, 14), np.uint8)), "holds 14x14 images but"),
])
@pytest.mark.parametrize("gz", [False, True])
def test_damaged_files_are_one_line_errors_naming_the_file(tmp_path, name, data, match, gz):
    make_set(tmp_path)
    _damage(tmp_path, name, data, gz)
    with pytest.raises(DatasetError, match=match) as info:
        load_dataset("mnist", root=tmp_path)
    assert "\n" not in str(info.value) and name in str(info.value)


def test_corrupt_gzip(tmp_path):
    make_set(tmp_path, gz=True)
    good = (tmp_path / "train-images-idx3-ubyte.gz").read_bytes()
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz is a truncated gzip file"):
        load_dataset("mnist", root=tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(good[:10] + b"\xff" * 50)
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz is not a readable gzip file"):
        load_dataset("mnist", root=tmp_path)


def test_read_idx_round_trip(tmp_path):
    array = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    path = write(tmp_path / "x-idx3-ubyte", idx_bytes(array), gz=True)
    assert np.array_equal(read_idx(path, 3), array)


def test_emnist_is_transposed_back_and_letters_start_at_one(tmp_path):
    arrays = make_set(tmp_path / "gzip", n_train=52, n_val=26, classes=26, prefix="emnist-letters-",
                      val_part="test", label_offset=1, gz=True)
    split = load_dataset("emnist-letters", root=tmp_path, input_size=28)
    assert split.num_classes == 26 and split.classes[0] == "A" and split.classes[25] == "Z"
    images, labels = arrays["test"]
    assert split.val_y.tolist() == (labels.astype(int) - 1).tolist()
    assert np.allclose(unnormalise(split, split.val_x[5])[0], images[5].T, atol=1e-3)


REAL = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not (REAL / "train-images-idx3-ubyte.gz").is_file() and
                    not (REAL / "train-images-idx3-ubyte").is_file(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_with_a_limit():
    split = load_dataset("fashion-mnist", input_size=16, limit=200, seed=3)
    assert (split.train_size, split.val_size, split.num_classes) == (160, 40, 10)
    assert split.train_y.bincount().tolist() == [16] * 10 and split.val_y.bincount().tolist() == [4] * 10
    assert split.classes == FASHION
    assert 0.1 < split.mean[0] < 0.5  # Fashion-MNIST's mean pixel is about 0.29
