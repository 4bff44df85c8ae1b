"""Run the reliability batteries and print their figures.

    .venv/bin/python benchmarks/reliability_battery.py

Runs tests/test_crash_recovery.py (SIGKILL of the search CLI in known phases, SQLite and journal),
tests/test_bad_inputs.py (malformed inputs over every command), tests/test_worker_faults.py,
tests/test_storage_concurrency.py, tests/test_network_surface.py, the checks made before a search
starts, untrusted files, size bounds, training resume after SIGKILL and disturbed measurements with
pytest, then prints how
many kills, bad inputs and faults were exercised and whether every check held. The tests assert
"no trial lost, none duplicated", so a passing battery means 0 lost and 0 duplicated.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

FILES = {
    "crash recovery": "tests/test_crash_recovery.py",
    "bad inputs": "tests/test_bad_inputs.py",
    "worker faults": "tests/test_worker_faults.py",
    "storage concurrency": "tests/test_storage_concurrency.py",
    "network surface": "tests/test_network_surface.py",
    "parser fuzzing": "tests/test_fuzz_parsers.py",
    "checks before start": "tests/test_search_validation.py",
    "untrusted files": "tests/test_security.py",
    "size bounds": "tests/test_memory_bounds.py",
    "training resume": "tests/test_train_resume.py",
    "disturbed measurements": "tests/test_measure_stability.py",
}


def main() -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    import test_bad_inputs
    import test_crash_recovery

    kills = sum(len(plan) for plan in test_crash_recovery.KILL_PLAN.values())
    rows = []
    ok = True
    for name, path in FILES.items():
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", path], cwd=REPO,
                              capture_output=True, text=True)
        wall = time.perf_counter() - started
        summary = next((line for line in reversed(done.stdout.splitlines()) if re.search(r"\d+ (passed|failed)", line)),
                       done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "no output")
        ok &= done.returncode == 0
        rows.append((name, path, summary.strip("= "), f"{wall:.0f} s"))
    print(f"{'battery':<20} {'result':<40} wall")
    for name, _, summary, wall in rows:
        print(f"{name:<20} {summary:<40} {wall}")
    print()
    print(f"SIGKILLs survived (crash recovery, SQLite + journal): {kills if ok else 'see failures'}")
    print(f"bad inputs tried: {len(test_bad_inputs.CASES)} (+3 through the real entry point, +1 corrupt ONNX cache)")
    print(f"trials lost: {0 if ok else 'see failures'}, duplicated trials: {0 if ok else 'see failures'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
