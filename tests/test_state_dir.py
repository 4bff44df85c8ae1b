"""The state directory ($SHUFFLENAS_HOME): a file, a path under a file or a read-only folder is one line."""

from __future__ import annotations

import os

import pytest

from latency_models.paths import StateDirError, cache_dir, data_home, home_path
from search_space.errors import ShufflenasError


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "not-a-folder"
    path.write_text("this file must survive\n")
    return path


@pytest.mark.parametrize("sub, why", [("", "is a file, not a folder"),
                                      ("sub/home", "a part of it is a file, not a folder")])
def test_home_that_is_a_file(monkeypatch, a_file, sub, why):
    home = a_file / sub if sub else a_file
    monkeypatch.setenv("SHUFFLENAS_HOME", str(home))
    for call in (data_home, lambda: cache_dir("onnx")):
        with pytest.raises(StateDirError, match=why) as info:
            call()
        message = str(info.value)
        assert isinstance(info.value, ShufflenasError) and "\n" not in message
        assert str(home) in message and "SHUFFLENAS_HOME" in message
    assert a_file.read_text() == "this file must survive\n"


def test_cache_folder_that_is_a_file(monkeypatch, tmp_path):
    monkeypatch.setenv("SHUFFLENAS_HOME", str(tmp_path))
    (tmp_path / "calibrations").write_text("x")
    with pytest.raises(StateDirError, match="calibrations is a file, not a folder"):
        cache_dir("calibrations")
    assert cache_dir("onnx") == tmp_path / "onnx" and (tmp_path / "onnx").is_dir()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_home_that_is_not_writable(monkeypatch, tmp_path):
    home = tmp_path / "ro"
    home.mkdir()
    home.chmod(0o500)
    try:
        monkeypatch.setenv("SHUFFLENAS_HOME", str(home))
        with pytest.raises(StateDirError, match="is not writable"):
            data_home()
        monkeypatch.setenv("SHUFFLENAS_HOME", str(home / "sub"))
        with pytest.raises(StateDirError, match="permission denied"):
            data_home()
    finally:
        home.chmod(0o700)


def test_home_path_creates_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("SHUFFLENAS_HOME", str(tmp_path / "later"))
    assert home_path() == tmp_path / "later" and not (tmp_path / "later").exists()
    assert data_home() == tmp_path / "later" and (tmp_path / "later").is_dir()


@pytest.mark.parametrize("command", [("latency", "measure", "0.5x", "--target", "local-cpu"),
                                     ("latency", "predict", "0.5x", "--target", "paper-arm-sd810"),
                                     ("latency", "predict", "0.5x", "--target", "local-cpu")])
@pytest.mark.parametrize("sub", ["", "sub"])
def test_cli_with_a_file_as_home(cli_here, a_file, command, sub):
    home = a_file / sub if sub else a_file
    result = cli_here(*command, env={"SHUFFLENAS_HOME": str(home)})
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr and str(home) in lines[0] and "not a folder" in lines[0]
    assert a_file.read_text() == "this file must survive\n"
