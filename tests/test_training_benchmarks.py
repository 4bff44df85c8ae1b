"""The training benchmarks on tiny real runs: CSV contents, resuming after a rerun, bad flags."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / script), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def test_train_reference_trains_resumes_and_tabulates(tmp_path):
    args = ("--dataset", "digits", "--input-size", "8", "--epochs", "1", "--k", "1", "--presets", "0.5x",
            "--seeds", "2", "--out", str(tmp_path))
    first = run("train_reference.py", *args)
    assert first.returncode == 0, first.stderr
    csv_path = tmp_path / "digits-full-8px-1ep" / "results.csv"
    rows = list(csv.DictReader(csv_path.open()))
    assert [(r["label"], r["seed"]) for r in rows] == [("0.5x", "0"), ("0.5x", "1"), ("sample0", "0"),
                                                        ("sample0", "1")]
    assert all(r["input_size"] == "8" and r["epochs"] == "1" and 0 <= float(r["val_top1"]) <= 1 for r in rows)
    assert (tmp_path / "digits-full-8px-1ep" / "0.5x-seed1" / "checkpoint.pt").exists()
    assert "| 0.5x | 0.5x |" in first.stdout and "1438 training / 359 validation images at 8x8" in first.stdout
    again = run("train_reference.py", *args)  # every run is already trained: same figures, nothing retrained
    assert again.returncode == 0, again.stderr
    assert "already trained" in again.stderr
    assert list(csv.DictReader(csv_path.open())) == rows


def test_budget_bias_rows_per_budget_and_resume(tmp_path):
    args = ("--candidates", "digits@8", "--budgets", "1,2", "--n", "1", "--out", str(tmp_path))
    first = run("budget_bias.py", *args)
    assert first.returncode == 0, first.stderr
    rows = list(csv.DictReader((tmp_path / "budget_bias.csv").open()))
    assert sorted((r["budget"], r["label"]) for r in rows) == [("1", "0.5x"), ("1", "2.0x"), ("1", "sample0"),
                                                               ("2", "0.5x"), ("2", "2.0x"), ("2", "sample0")]
    assert "| digits@8 (1438/359) |" in first.stdout
    again = run("budget_bias.py", *args)
    assert again.returncode == 0 and again.stderr == ""  # nothing left to train
    assert len(list(csv.DictReader((tmp_path / "budget_bias.csv").open()))) == 6


def test_bad_flags_are_one_line_errors(tmp_path):
    for script, args in (("budget_bias.py", ("--candidates", "digits", "--out", str(tmp_path))),
                         ("budget_bias.py", ("--budgets", "1,x", "--out", str(tmp_path))),
                         ("train_reference.py", ("--recipe", str(tmp_path / "none.toml"), "--out", str(tmp_path))),
                         ("train_reference.py", ("--dataset", "nope", "--out", str(tmp_path)))):
        done = run(script, *args)
        assert done.returncode == 2, (script, args, done.stderr)
        assert done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "budget_bias.csv").exists()
