"""Untrusted files cannot run code or write outside their folders.

A CIFAR batch is a pickle: a crafted one must be refused before anything it names is called. A
target's name becomes a file name (``<name>.lut.json``): a targets file cannot make a command write
outside ``$SHUFFLENAS_HOME``.
"""

from __future__ import annotations

import builtins
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from evaluator.datasets import DatasetError, load_dataset
from evaluator.datasets_cifar import unpickle
from latency_models.paths import UnsafeNameError, cache_dir, check_name, safe_file
from latency_models.measurement.targets import TargetError, load_targets


# -- CIFAR batches: a restricted unpickler ----------------------------------------------------------
class _Call:
    """Pickles as "call ``func(*args)`` when loaded": what a crafted batch does."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _malicious_batches(marker: Path) -> dict[str, object]:
    return {
        "os.system": _Call(os.system, f"touch {marker}"),
        "builtins.open": _Call(builtins.open, str(marker), "w"),
        "inside the dict": {b"data": _Call(builtins.open, str(marker), "w"), b"labels": [0]},
        "pathlib": _Call(Path.touch, marker),
        "numpy.save": _Call(np.save, str(marker), np.zeros(1)),
    }


@pytest.mark.parametrize("kind", ["os.system", "builtins.open", "inside the dict", "pathlib", "numpy.save"])
@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_crafted_batch_runs_nothing(tmp_path, kind, protocol):
    marker = tmp_path / "pwned"
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    # the payload really does create the marker when unpickled with plain pickle
    pickle.loads(pickle.dumps(_malicious_batches(tmp_path / "control")[kind], protocol=protocol))
    assert any(p.name.startswith("control") for p in tmp_path.iterdir())

    (root / "data_batch_1").write_bytes(pickle.dumps(_malicious_batches(marker)[kind], protocol=protocol))
    with pytest.raises(DatasetError, match="not a CIFAR python batch: UnpicklingError: refusing to load global") \
            as info:
        load_dataset("cifar10", root=root)
    assert "\n" not in str(info.value) and "data_batch_1" in str(info.value)
    assert not any(p.name.startswith("pwned") for p in tmp_path.iterdir())


def test_codecs_encode_only_as_latin1(tmp_path):
    """``_codecs.encode`` is admitted for protocol 2's bytes, not as a general codec call."""
    import _codecs

    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps(_Call(_codecs.encode, "abc", "rot13"), protocol=2))
    with pytest.raises(DatasetError, match="latin1"):
        unpickle(path)
    path.write_bytes(pickle.dumps(_Call(_codecs.encode, b"abc", "hex"), protocol=2))
    with pytest.raises(DatasetError, match="latin1"):
        unpickle(path)


class _Python2Pickler(pickle._Pickler):
    """Writes what Python 2's cPickle wrote for CIFAR: bytes as BINSTRING, numpy under ``numpy.core``."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_bytes(self, obj):
        n = len(obj)
        self.write((pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes

    def save_global(self, obj, name=None):
        module = obj.__module__.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)


def _real_format_batch(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"training batch 1 of 5", b"labels": [int(i % 10) for i in range(n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [f"img_{i}.png".encode() for i in range(n)]}


def test_real_format_batches_still_load(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    python2 = _real_format_batch(30, 0)
    with open(root / "data_batch_1", "wb") as fh:
        _Python2Pickler(fh, protocol=2).dump(python2)
    assert b"numpy.core.multiarray\n_reconstruct" in (root / "data_batch_1").read_bytes()
    python3 = _real_format_batch(30, 1)
    python3[b"labels"] = [np.int64(v) for v in python3[b"labels"]]  # numpy scalars in the list
    (root / "data_batch_2").write_bytes(pickle.dumps(python3, protocol=2))
    (root / "test_batch").write_bytes(pickle.dumps(_real_format_batch(20, 2), protocol=pickle.HIGHEST_PROTOCOL))
    with open(root / "batches.meta", "wb") as fh:
        _Python2Pickler(fh, protocol=2).dump({b"label_names": [f"name{i}".encode() for i in range(10)],
                                              b"num_vis": 3072})

    batch = unpickle(root / "data_batch_1")
    assert np.array_equal(batch["data"], python2[b"data"]) and batch["labels"] == python2[b"labels"]
    split = load_dataset("cifar10", root=root, input_size=32)
    assert split.train_size == 60 and split.val_size == 20 and split.classes[3] == "name3"
    # the pixels survive: un-normalise the first training image and compare with the batch
    mean, std = np.array(split.mean)[:, None, None], np.array(split.std)[:, None, None]
    image = split.train_x[0].numpy() * std + mean
    assert np.allclose(image * 255, python2[b"data"][0].reshape(3, 32, 32), atol=1e-3)


# -- target names and the safe-path helper ----------------------------------------------------------
ESCAPES = ["../x", "../../../tmp/evil", "a/b", "/etc/passwd", "", ".", "..", "a..b", ".hidden", "-flag",
           "x\x00y", "x\ny", "a" * 65, "name with space", "ümlaut", "a\\b"]


@pytest.mark.parametrize("name", ESCAPES)
def test_safe_file_refuses_escapes(tmp_path, name):
    with pytest.raises(UnsafeNameError) as info:
        safe_file(tmp_path, name, ".lut.json", "target")
    assert "\n" not in str(info.value) and str(info.value).startswith("target ")
    with pytest.raises(UnsafeNameError):
        cache_dir(name)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["local-cpu", "paper-gpu-1080ti", "rpi4", "a.b_c-1", "A" * 64])
def test_safe_file_keeps_plain_names_in_their_folder(tmp_path, name):
    path = safe_file(tmp_path, name, ".predictor.json")
    assert path.parent == tmp_path and path.name == f"{name}.predictor.json" and check_name(name) == name


def test_every_builtin_name_is_safe():
    for name, target in load_targets().items():
        assert check_name(name) == name
        assert target.calibration is None or check_name(target.calibration) == target.calibration


EVIL = "../../outside/evil"


def _evil_targets(tmp_path: Path, name: str = EVIL, extra: str = "") -> Path:
    path = tmp_path / "targets.toml"
    path.write_text(f'[targets."{name}"]\ndescription = "d"\nkind = "measure"\nbackend = "onnxruntime"\n'
                    f'device = "cpu"\ninput_size = 16\n{extra}')
    return path


@pytest.mark.parametrize("name", [EVIL, "a/b", "..", "x y"])
def test_unsafe_target_name_is_refused_at_load(tmp_path, name):
    with pytest.raises(TargetError, match="a target name must be 1 to 64 letters") as info:
        load_targets(_evil_targets(tmp_path, name))
    assert repr(name) in str(info.value) and "\n" not in str(info.value)


def test_unsafe_calibration_name_is_refused(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('[targets.phone]\ndescription = "d"\nkind = "estimate"\ndevice = "cpu"\n'
                    'calibration = "../../../etc/passwd"\n')
    with pytest.raises(TargetError, match="calibration '../../../etc/passwd': a calibration name must be"):
        load_targets(path)


@pytest.mark.parametrize("command", [
    ("latency", "targets"),
    ("latency", "build-lut", "--target", EVIL, "--samples", "1", "--calibrate", "1"),
    ("latency", "calibrate", "--target", EVIL, "--quick"),
    ("latency", "train-predictor", "--target", EVIL, "--samples", "4"),
    ("latency", "measure", "0.5x", "--target", EVIL),
])
def test_cli_refuses_unsafe_target_names_and_writes_nothing_outside(cli_here, tmp_path, command):
    home = tmp_path / "home"
    (home / "calibrations").mkdir(parents=True)
    outside = tmp_path / "outside"  # where home/calibrations/../../outside/evil.lut.json would land
    outside.mkdir()
    result = cli_here(*command, "--targets-file", str(_evil_targets(tmp_path)), env={"SHUFFLENAS_HOME": str(home)})
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "a target name must be" in lines[0] and repr(EVIL) in lines[0]
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("key, value, limit", [("input_size", 100000, 4096), ("batch", 5000, 4096),
                                               ("threads", 2000, 1024)])
def test_huge_numbers_are_refused_at_load(tmp_path, key, value, limit):
    path = tmp_path / "t.toml"
    path.write_text(f"[targets.local-cpu]\n{key} = {value}\n")
    with pytest.raises(TargetError, match=f"{key} must be <= {limit}, got {value}") as info:
        load_targets(path)
    assert "\n" not in str(info.value)
    path.write_text(f"[targets.local-cpu]\n{key} = {limit}\n")
    assert getattr(load_targets(path)["local-cpu"], key) == limit


def test_cli_refuses_a_huge_input_size(cli_here, tmp_path):
    path = tmp_path / "t.toml"
    path.write_text("[targets.local-cpu]\ninput_size = 100000\n")
    result = cli_here("latency", "targets", "--targets-file", str(path), env={"SHUFFLENAS_HOME": str(tmp_path / "h")})
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "input_size must be <= 4096, got 100000" in result.stderr
