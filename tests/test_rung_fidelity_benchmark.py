"""benchmarks/rung_fidelity.py: the replay of successive halving and the report, on rows written here
(no training: the training stage is train_proxy, tested elsewhere), and its bad flags."""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from pathlib import Path

import pytest
from bench_scripts import load_benchmark

from experiments.successive_halving import Fidelity, RungResult

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "rung_fidelity.py"


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("rung_fidelity")


def test_survivors_follow_the_rule(bench):
    # rung 0: four networks; the two small ones look best early, the large ones are slower
    rung0 = [RungResult(0, 0.80, (1.0,), 10), RungResult(1, 0.79, (1.1,), 11),
             RungResult(2, 0.70, (5.0,), 100), RungResult(3, 0.69, (5.1,), 101)]
    rung1 = [RungResult(n, 0.9, (c.costs[0],), c.flops) for n, c in enumerate(rung0)]
    results = {0: rung0, 1: rung1}
    assert bench.survivors(results, Fidelity((1, 2), 2, "nondominated")) == {0, 1}
    assert bench.survivors(results, Fidelity((1, 2), 2, "bands", 2)) == {0, 2}  # one per FLOPs band


def test_hypervolume_of_the_whole_front_is_the_largest(bench):
    points = [(0.9, 5.0), (0.8, 2.0), (0.7, 4.0)]
    ref = (0.6, 6.0)
    full = bench.hypervolume(points, ref)
    assert full == pytest.approx(0.3 * 1.0 + 0.2 * 3.0)   # (0.9, 5) then (0.8, 2); (0.7, 4) is dominated
    assert bench.hypervolume(points[:1], ref) < full


def test_report_from_rows(bench, tmp_path):
    args = argparse.Namespace(n=2, sample_seed=0, dataset="fashion-mnist", limit=500, input_size=16, eta=2)
    rows = []
    for i, (label, arch) in enumerate(bench.candidates(2, 0)):
        for rung in (1, 2):
            rows.append({"label": label, "arch_id": arch.arch_id, "arch": arch.to_string(), "rung": rung,
                         "accuracy": 0.5 + i / 20 + rung / 100, "seconds": 1.0, "mflops": 10 * (i + 1),
                         "params": 1000, "arm_ms": 1.0 + i, "dataset": "fashion-mnist", "limit": 500,
                         "input_size": 16})
    with (tmp_path / "rows.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=bench.FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    text = bench.report(args, [1, 2], tmp_path)
    assert "6 architectures" in text and "| 1 | 1.000 | 1.000 |" in text   # rung 1 ranks as rung 2 does
    assert "| nondominated |" in text and (tmp_path / "rung_fidelity.md").read_text().strip() == text


@pytest.mark.parametrize("flags", [["--rungs", "3,1"], ["--rungs", "1,x"], ["--jobs", "0"], ["--eta", "1"]])
def test_bad_flags_one_line_exit_2(flags, tmp_path):
    run = subprocess.run([sys.executable, str(SCRIPT), "report", "--out", str(tmp_path), *flags],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("rung_fidelity.py: error:")
