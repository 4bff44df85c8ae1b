"""Data sets through the real loaders: sklearn digits, CIFAR pickles and an ImageFolder written here."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from evaluator.datasets import DATASETS, DataSplit, DatasetError, find_classes, load_dataset
from search_space.errors import ShufflenasError


def write_cifar_batch(path: Path, n: int, seed: int, label_key: bytes = b"labels", classes: int = 10) -> None:
    """A batch in the real CIFAR python format: uint8 (N, 3072) rows, R then G then B planes."""
    rng = np.random.default_rng(seed)
    labels = [int(i % classes) for i in range(n)]
    batch = {b"batch_label": b"testing batch", b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             label_key: labels, b"filenames": [f"img{i}.png".encode() for i in range(n)]}
    with open(path, "wb") as fh:
        pickle.dump(batch, fh, protocol=2)


@pytest.fixture
def cifar10_dir(tmp_path: Path) -> Path:
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    write_cifar_batch(root / "data_batch_1", 20, 0)
    write_cifar_batch(root / "data_batch_2", 20, 1)
    write_cifar_batch(root / "test_batch", 20, 2)
    with open(root / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, fh)
    return root


def write_imagefolder(root: Path, classes=("cat", "ant", "bee"), per_class: int = 4, sizes=((20, 12), (9, 9))) -> Path:
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            w, h = sizes[i % len(sizes)]
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            ext = "png" if i % 2 == 0 else "jpg"
            Image.fromarray(pixels).save(root / name / f"{i}.{ext}")
    return root


def check_split(split: DataSplit, size: int, num_classes: int) -> None:
    assert split.train_x.dtype == torch.float32 and split.val_x.dtype == torch.float32
    assert split.train_y.dtype == torch.int64 and split.val_y.dtype == torch.int64
    assert split.train_x.shape[1:] == (3, size, size) and split.val_x.shape[1:] == (3, size, size)
    assert split.train_x.shape[0] == split.train_y.shape[0] and split.val_x.shape[0] == split.val_y.shape[0]
    assert split.num_classes == num_classes and split.input_size == size
    assert torch.isfinite(split.train_x).all() and torch.isfinite(split.val_x).all()
    # normalised with the training statistics
    assert split.train_x.mean(dim=(0, 2, 3)).abs().max() < 1e-3
    assert (split.train_x.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-2


def test_registry_names_every_format():
    assert set(DATASETS) >= {"digits", "cifar10", "cifar100", "imagefolder"}


def test_digits_default_split_is_stratified_and_seeded():
    a = load_dataset("digits", input_size=16, seed=0)
    check_split(a, 16, 10)
    assert a.train_size + a.val_size == 1797
    assert abs(a.val_size / 1797 - 0.2) < 0.01
    assert set(a.val_y.tolist()) == set(range(10))  # every class in validation
    assert torch.equal(a.train_x[:, 0], a.train_x[:, 2])  # grey replicated to 3 channels
    b = load_dataset("digits", input_size=16, seed=0)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.val_y, b.val_y)
    c = load_dataset("digits", input_size=16, seed=1)
    assert not torch.equal(a.val_y, c.val_y) or not torch.equal(a.val_x, c.val_x)


def test_digits_limit_and_size():
    small = load_dataset("digits", input_size=12, limit=100, val_fraction=0.3)
    check_split(small, 12, 10)
    assert small.train_size + small.val_size == 100
    assert small.val_size == 30


def test_cifar10_batches(cifar10_dir: Path):
    split = load_dataset("cifar10", root=cifar10_dir, input_size=16)
    check_split(split, 16, 10)
    assert split.train_size == 40 and split.val_size == 20  # data batches train, the test batch validates
    assert split.classes[0] == "c0"
    # the parent directory works too, and limit caps both splits
    capped = load_dataset("cifar10", root=cifar10_dir.parent, input_size=16, limit=20)
    assert capped.train_size + capped.val_size == 20


def test_cifar10_without_test_batch_splits_the_training_data(cifar10_dir: Path):
    (cifar10_dir / "test_batch").unlink()
    split = load_dataset("cifar10", root=cifar10_dir, input_size=16)
    assert split.train_size + split.val_size == 40 and split.val_size >= 8


def test_cifar100(tmp_path: Path):
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    write_cifar_batch(root / "train", 20, 0, b"fine_labels", classes=5)
    write_cifar_batch(root / "test", 10, 1, b"fine_labels", classes=5)
    split = load_dataset("cifar100", root=root, input_size=16)
    check_split(split, 16, 100)
    assert split.train_size == 20 and split.val_size == 10


def test_imagefolder_mixed_sizes_and_torchvision_class_order(tmp_path: Path):
    root = write_imagefolder(tmp_path / "imgs")
    assert find_classes(root) == ["ant", "bee", "cat"]
    split = load_dataset("imagefolder", root=root, input_size=16, val_fraction=0.25)
    check_split(split, 16, 3)
    assert split.classes == ("ant", "bee", "cat")
    assert split.train_size == 9 and split.val_size == 3


@pytest.mark.parametrize("name, make, match", [
    ("nope", None, "unknown data set 'nope'"),
    ("cifar10", lambda p: p, "no CIFAR-10 batches"),
    ("imagefolder", lambda p: p / "missing", "does not exist"),
    ("imagefolder", lambda p: p, "no class sub-directories"),
])
def test_errors_are_one_line(tmp_path: Path, name, make, match):
    with pytest.raises(DatasetError, match=match) as info:
        load_dataset(name, root=make(tmp_path) if make else None)
    assert isinstance(info.value, ShufflenasError) and "\n" not in str(info.value)


def test_malformed_pickle(tmp_path: Path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    (root / "data_batch_1").write_bytes(b"this is not a pickle")
    with pytest.raises(DatasetError, match="not a CIFAR python batch"):
        load_dataset("cifar10", root=root)
    with open(root / "data_batch_1", "wb") as fh:
        pickle.dump({b"data": np.zeros((3, 10), np.uint8), b"labels": [0, 1, 2]}, fh)
    with pytest.raises(DatasetError, match="3072"):
        load_dataset("cifar10", root=root)
    with open(root / "data_batch_1", "wb") as fh:
        pickle.dump([1, 2, 3], fh)
    with pytest.raises(DatasetError, match="expected a dict"):
        load_dataset("cifar10", root=root)


def test_corrupted_image(tmp_path: Path):
    root = write_imagefolder(tmp_path / "imgs")
    (root / "bee" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DatasetError, match="cannot read image .*broken.png"):
        load_dataset("imagefolder", root=root)


def test_empty_class_folder_and_single_class(tmp_path: Path):
    root = write_imagefolder(tmp_path / "imgs")
    (root / "empty").mkdir()
    with pytest.raises(DatasetError, match="has no images"):
        load_dataset("imagefolder", root=root)
    one = write_imagefolder(tmp_path / "one", classes=("only",))
    with pytest.raises(DatasetError, match="at least 2 classes"):
        load_dataset("imagefolder", root=one)


@pytest.mark.parametrize("kwargs, match", [
    ({"input_size": 4}, "input_size"), ({"val_fraction": 1.0}, "val_fraction"), ({"limit": 2}, "limit"),
])
def test_bad_options(kwargs, match):
    with pytest.raises(DatasetError, match=match):
        load_dataset("digits", **kwargs)


@pytest.mark.parametrize("name", ["imagefolder", "cifar10", "cifar100", "mnist", "fashion-mnist"])
def test_root_that_is_a_file_or_missing(tmp_path: Path, name):
    a_file = tmp_path / "data.bin"
    a_file.write_bytes(b"not a folder")
    with pytest.raises(DatasetError, match=r"data root .*data\.bin is a file, not a folder") as info:
        load_dataset(name, root=a_file)
    assert "\n" not in str(info.value)
    with pytest.raises(DatasetError, match=r"data root .*missing does not exist"):
        load_dataset(name, root=tmp_path / "missing")


def test_single_class_is_refused_before_any_image_is_decoded(tmp_path: Path):
    one = write_imagefolder(tmp_path / "one", classes=("only",))
    (one / "only" / "broken.png").write_bytes(b"\x89PNG garbage")  # decoding would fail on this one
    with pytest.raises(DatasetError, match=r"needs at least 2 classes .*found 1 \('only'\)"):
        load_dataset("imagefolder", root=one)


def test_empty_root_folder(tmp_path: Path):
    for name, match in (("imagefolder", "no class sub-directories"), ("cifar10", "no CIFAR-10 batches"),
                        ("mnist", "no MNIST files")):
        with pytest.raises(DatasetError, match=match):
            load_dataset(name, root=tmp_path)


def test_names_are_matched_loosely_and_reported_canonically():
    split = load_dataset("Digits", input_size=8, limit=40)
    assert split.name == "digits"
    with pytest.raises(DatasetError, match="known: digits, cifar10, cifar100, imagefolder, mnist, fashion-mnist"):
        load_dataset("fashion-mnist-2")
