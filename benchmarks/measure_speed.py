"""How fast and how stable is a latency measurement on local-cpu, and which ONNX exporter to use.

Run:  .venv/bin/python benchmarks/measure_speed.py [--repeats 5] [--candidates 3] [--neighbour] [--out FILE]

1. Exporters: legacy (dynamo=False) vs dynamo on ShuffleNetV2 1.0x at 224 - export wall time, the
   same module's outputs in ONNX Runtime compared, and each graph's ORT median.
2. New candidate: wall time of ``measure(arch, "local-cpu")`` for architectures never seen before
   (fresh cache), export included; target <= 3 s.
3. Drift: ``repeats`` uncached measurements of each of five networks (not the reference), interleaved
   in time; target: std/mean of the median < 5 %. ``--neighbour`` adds an intermittent memory-bound
   process, the kind of neighbour that makes a shared machine's speed drift.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def exporters(lines: list[str]) -> None:
    from latency_models.measurement import device_runtime
    from latency_models.measurement.onnx_export import export_module_bytes
    from search_space import build_model, get_preset

    shape = (1, 3, 224, 224)
    module = build_model(get_preset("1.0x")).eval()
    results = {}
    for exporter in ("legacy", "dynamo"):
        started = time.perf_counter()
        data = export_module_bytes(module, shape, exporter=exporter)
        seconds = time.perf_counter() - started
        run = device_runtime.measure_onnx(data, shape, budget_s=1.0, return_output=True)
        results[exporter] = (seconds, run)
    diff = float(np.max(np.abs(results["legacy"][1]["output"] - results["dynamo"][1]["output"])))
    scale = float(np.max(np.abs(results["legacy"][1]["output"])))
    ratio = results["dynamo"][0] / results["legacy"][0]
    lines += ["## ONNX exporter (ShuffleNetV2 1.0x, 224, batch 1)", "",
              "| exporter | export wall s | ORT median ms (1 thread) |", "|---|---|---|"]
    for exporter, (seconds, run) in results.items():
        lines.append(f"| {exporter} | {seconds:.2f} | {run['median_ms']:.2f} |")
    lines += ["", f"dynamo / legacy export time: {ratio:.1f}x; max |output difference| {diff:.2e} "
              f"(output scale {scale:.2e}) -> {'same outputs' if diff <= 1e-3 * max(scale, 1.0) else 'OUTPUTS DIFFER'}.",
              f"Kept: {'legacy (dynamo=False)' if ratio > 1 else 'dynamo'}.", ""]


def new_candidates(lines: list[str], count: int) -> None:
    from latency_models.measurement import measure as measure_mod
    from search_space import DEFAULT_SPACE

    lines += ["## One new candidate on local-cpu (export + measure, 1 s timed-runs budget)", "",
              "| arch | export s | total wall s | median ms | runs |", "|---|---|---|---|---|"]
    walls = []
    for arch in DEFAULT_SPACE.sample_many(count, seed=int(time.time()) % 10_000):
        started = time.perf_counter()
        measure_mod.onnx_bytes(arch)  # fresh SHUFFLENAS_HOME: this is the export
        exported = time.perf_counter() - started
        m = measure_mod.measure(arch, "local-cpu")
        wall = time.perf_counter() - started
        walls.append(wall)
        lines.append(f"| {arch.to_string()} | {exported:.2f} | {wall:.2f} | {m.median_ms:.2f} | {m.runs} |")
    lines += ["", f"median wall per new candidate: {statistics.median(walls):.2f} s (target <= 3 s)", ""]


NEIGHBOUR = """
import numpy as np, time
a = np.random.rand(3000, 3000)
while True:
    end = time.time() + np.random.uniform(0.5, 3.0)          # busy for 0.5-3 s ...
    while time.time() < end:
        b = a.T.copy(); a += 1e-9                            # memory-bound, like a training job
    time.sleep(np.random.uniform(0.5, 3.0))                  # ... then idle for 0.5-3 s
"""


def drift(lines: list[str], repeats: int, neighbour: bool) -> None:
    """Uncached measurements of networks other than the reference, interleaved over time."""
    import subprocess

    from latency_models.measurement.measure import measure, reference_anchor
    from latency_models.measurement.targets import get_target
    from search_space import DEFAULT_SPACE, get_preset, preset_name, resolve_arch

    target = get_target("local-cpu")
    anchor = reference_anchor(target).anchor_ms if target.reference else None
    archs = [get_preset("0.5x"), get_preset("1.5x"), get_preset("2.0x"), *DEFAULT_SPACE.sample_many(2, seed=7)]
    archs = [a for a in archs if a.to_string() != target.reference]
    helper = subprocess.Popen([sys.executable, "-c", NEIGHBOUR]) if neighbour else None
    try:
        runs = {a.arch_id: [] for a in archs}
        for _ in range(repeats):
            for arch in archs:
                runs[arch.arch_id].append(measure(arch, target, cache=False))
                time.sleep(0.5)
    finally:
        if helper is not None:
            helper.kill()
    lines += [f"## Run-to-run drift: {repeats} uncached measurements of each network on local-cpu, interleaved", "",
              (f"Reference {preset_name(resolve_arch(target.reference)) or target.reference}, "
               f"anchor {anchor:.3f} ms (drawn once, before the runs). " if anchor else "No reference on this target. ")
              + ("A neighbour process (memory-bound numpy, busy 0.5-3 s then idle 0.5-3 s) shared the machine."
                 if neighbour else "No added load."), "",
              "| network | reported median_ms (std/mean, (max-min)/median) | raw median (std/mean, (max-min)/median) | slowdown range |",
              "|---|---|---|---|"]
    worst = {"median_ms": 0.0, "raw_median_ms": 0.0}
    for arch in archs:
        cells = []
        for name in ("median_ms", "raw_median_ms"):
            values = [getattr(m, name) for m in runs[arch.arch_id] if getattr(m, name) is not None]
            if not values:
                cells.append("-")
                continue
            cv = statistics.pstdev(values) / statistics.mean(values)
            spread = (max(values) - min(values)) / statistics.median(values)
            worst[name] = max(worst[name], cv)
            cells.append(f"{statistics.median(values):.2f} ms ({cv * 100:.1f} %, {spread * 100:.1f} %)")
        slow = [m.slowdown for m in runs[arch.arch_id] if m.slowdown is not None]
        label = preset_name(arch) or arch.to_string()
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {f'{min(slow):.2f}-{max(slow):.2f}' if slow else '-'} |")
    lines += ["", f"Worst drift (std/mean) of the reported median: {worst['median_ms'] * 100:.1f} % (target < 5 %); "
              f"of the raw median: {worst['raw_median_ms'] * 100:.1f} %.", ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--candidates", type=int, default=3)
    parser.add_argument("--neighbour", action="store_true",
                        help="run an intermittent memory-bound neighbour process during the drift runs")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "measure.md")
    args = parser.parse_args()
    os.environ["SHUFFLENAS_HOME"] = tempfile.mkdtemp(prefix="shufflenas-bench-")  # nothing cached yet
    import onnxruntime
    import torch

    from latency_models.measurement.device_runtime import cpu_model

    lines = ["# Measurement speed and stability (local-cpu)", "",
             f"Command: `.venv/bin/python benchmarks/measure_speed.py --repeats {args.repeats} "
             f"--candidates {args.candidates}{' --neighbour' if args.neighbour else ''}`", "",
             f"Machine: 2-core x86 VM, shared ({cpu_model()}, {os.cpu_count()} cores, {platform.machine()}); "
             f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}; "
             f"load average at start {os.getloadavg()[0]:.1f}.", ""]
    exporters(lines)
    from latency_models.measurement.measure import reference_anchor

    reference_anchor("local-cpu")  # drawn once per cache; not part of a candidate's cost
    new_candidates(lines, args.candidates)
    drift(lines, args.repeats, args.neighbour)
    load = os.getloadavg()[0]
    lines.append(f"Load average at end {load:.1f}.")
    if load > (os.cpu_count() or 1):
        lines += ["", f"Note: the load average ({load:.1f}) exceeded the {os.cpu_count()} cores: other jobs shared "
                  "the CPU, so drift here measures their load, not the method. Re-run on an idle machine "
                  "to judge the 5 % target."]
    text = "\n".join(lines) + "\n"
    print(text)
    from latency_models.atomic import atomic_write_text

    atomic_write_text(args.out, text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
