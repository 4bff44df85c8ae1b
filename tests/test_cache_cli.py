"""`shufflenas cache info` / `cache prune` on real files in a temporary $SHUFFLENAS_HOME."""

from __future__ import annotations

import json
import os
import time

import pytest

from experiments.cli.main import main
from latency_models.measurement.cache_admin import parse_size
from latency_models.measurement.measure_cache import MeasurementCache

DAY = 86400.0


@pytest.fixture
def home(tmp_path, monkeypatch):
    """Three exports (40, 20 and 1 days old), an old measurement cache and an old calibration."""
    root = tmp_path / "home"
    monkeypatch.setenv("SHUFFLENAS_HOME", str(root))
    now = time.time()
    files = {"onnx/old.onnx": (3000, 40), "onnx/mid.onnx": (2000, 20), "onnx/new.onnx": (1000, 1),
             "calibrations/board.json": (500, 90), "benchmarks/retest.json": (100, 60)}
    for name, (size, age) in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)
        os.utime(path, (now - age * DAY, now - age * DAY))
    cache = MeasurementCache()
    cache.put({"key": "a"}, {"median_ms": 1.0})  # a real SQLite database (with its WAL companions)
    for path in (root / "measurements").iterdir():
        os.utime(path, (now - 50 * DAY, now - 50 * DAY))
    return root


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_info_counts_files_and_bytes_per_kind(home, capsys):
    code, out, _ = run(capsys, "cache", "info", "--json")
    assert code == 0
    data = json.loads(out)
    kinds = data["kinds"]
    assert kinds["onnx"]["files"] == 3 and kinds["onnx"]["bytes"] == 6000
    assert kinds["calibrations"]["files"] == 1 and kinds["benchmarks"]["bytes"] == 100
    assert kinds["measurements"]["files"] >= 1 and kinds["measurements"]["bytes"] > 0
    assert kinds["onnx"]["oldest"] < kinds["onnx"]["newest"]
    assert data["total_bytes"] == sum(k["bytes"] for k in kinds.values())
    code, out, _ = run(capsys, "cache", "info")
    assert code == 0 and "onnx" in out and "5.9 kB" in out and "calibrations" in out


def test_prune_by_age_only_touches_exports_unless_asked(home, capsys):
    code, out, _ = run(capsys, "cache", "prune", "--older-than", "10", "--dry-run")
    assert code == 0 and "would free 4.9 kB in 2 file(s)" in out
    assert (home / "onnx/old.onnx").exists() and (home / "onnx/mid.onnx").exists()
    code, out, _ = run(capsys, "cache", "prune", "--older-than", "10", "--json")
    data = json.loads(out)
    assert code == 0 and data["freed_bytes"] == 5000 and data["kinds"] == ["onnx"]
    assert [os.path.basename(d["path"]) for d in data["deleted"]] == ["old.onnx", "mid.onnx"]  # oldest first
    assert sorted(p.name for p in (home / "onnx").iterdir()) == ["new.onnx"]
    assert (home / "calibrations/board.json").exists() and (home / "benchmarks/retest.json").exists()
    assert any((home / "measurements").iterdir())  # 50 days old, but never pruned unless asked
    code, out, _ = run(capsys, "cache", "prune", "--older-than", "30", "--kind", "measurements")
    assert code == 0 and not any((home / "measurements").iterdir())  # the database and its WAL files
    assert (home / "calibrations/board.json").exists()


def test_prune_by_size_removes_the_oldest_first(home, capsys):
    code, out, _ = run(capsys, "cache", "prune", "--max-size", "3.5k")
    assert code == 0 and "freed 2.9 kB in 1 file(s)" in out and "old.onnx" in out
    assert sorted(p.name for p in (home / "onnx").iterdir()) == ["mid.onnx", "new.onnx"]
    code, out, _ = run(capsys, "cache", "prune", "--max-size", "0", "--kind", "onnx", "--kind", "calibrations")
    assert code == 0 and not any((home / "onnx").iterdir()) and not any((home / "calibrations").iterdir())
    assert (home / "benchmarks/retest.json").exists()


@pytest.mark.parametrize("argv, needle", [
    (("--max-size", "1x"), "bad size"),
    (("--max-size", "-5M"), "bad size"),
    (("--older-than", "-1"), "finite number of days"),
    (("--older-than", "nan"), "finite number of days"),
    (("--older-than", "soon"), "older-than"),
    (("--older-than", "1", "--kind", "nope"), "unknown cache kind"),
    ((), "say what to prune"),
])
def test_bad_flags_are_one_line_and_delete_nothing(home, capsys, argv, needle):
    before = sorted(p for p in home.rglob("*") if p.is_file())
    code, out, err = run(capsys, "cache", "prune", *argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err
    assert sorted(p for p in home.rglob("*") if p.is_file()) == before


def test_parse_size_units():
    assert parse_size("200M") == 200 * 1024 ** 2 and parse_size("1G") == 1024 ** 3
    assert parse_size("512k") == 512 * 1024 and parse_size("10MB") == 10 * 1024 ** 2 and parse_size("4096") == 4096


def test_through_the_entry_point(cli, home):
    done = cli("cache", "prune", "--max-size", "lots", env={"SHUFFLENAS_HOME": str(home)})
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    shown = cli("cache", "info", "--json", env={"SHUFFLENAS_HOME": str(home)})
    assert shown.returncode == 0 and json.loads(shown.stdout)["kinds"]["onnx"]["files"] == 3
