"""How well do the latency estimators predict measured latency on held-out architectures?

Samples disjoint train and test sets of random architectures from the default space, measures all
of them on a target (default ``local-cpu``: ONNX Runtime, 1 thread, batch 1, 224x224; measurements
are cached, so reruns are cheap), fits every estimator on the training set only and scores it on
the test set: fraction within +-10% and +-5%, MAPE, Spearman and Kendall. FLOPs' and raw MAC's rank
correlations with measured latency are printed next to them (plus linear fits on FLOPs and MAC, the
naive latency models). With ``--lut`` the per-block lookup table is built for every block of both
sets (block measurements) and its scale, offset and weight term calibrated on the training networks.

    python benchmarks/latency_accuracy.py --train 50 --test 25 --budget 1.0 \
        --out benchmarks/results/latency_accuracy.md
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import json
import os
import platform
import shlex
import sys
import time

import numpy as np

from latency_models.atomic import atomic_write_text
from latency_models.estimation import guideline as guideline_model
from latency_models.costs.analytic import architecture_layers, summary
from latency_models.estimation.lut import LookupTable
from latency_models.estimation.lut import BLOCK_PASSES, fit_terms
from latency_models.measurement.measure import measure, onnx_bytes, reference_anchor, software_versions
from latency_models.paths import cache_dir
from latency_models.estimation.predictor import LatencyPredictor, accuracy
from latency_models.measurement.targets import get_target
from search_space import DEFAULT_SPACE


class CpuClock:
    """Thread CPU time of single-threaded ONNX Runtime runs, cached per key in one JSON file.

    On a shared 2-core VM at load 8-10, wall-clock medians mostly time the other tenants (CV ~0.3);
    the CPU time of the one ORT thread is what the network itself costs (1-2% spread between
    repeats), and equals wall-clock latency on a quiet machine with one thread.
    """

    def __init__(self, target, runs: int = 40, passes: int = 1) -> None:
        if target.backend != "onnxruntime" or target.device != "cpu" or target.threads != 1 or target.is_remote:
            raise SystemExit("--clock cpu needs a local ONNX Runtime CPU target with threads = 1")
        self.target, self.runs, self.passes = target, runs, passes
        self.path = cache_dir("benchmarks") / f"cpu_clock_{target.name}_{target.input_size}_{target.batch}.json"
        self.data = json.loads(self.path.read_text()) if self.path.exists() else {}

    def time(self, key: str, make_bytes, shape) -> dict:
        """Time ``key`` until it has ``passes`` passes; the value is the lowest per-pass 10th percentile
        (other tenants only ever slow a run down, also through the shared core's caches)."""
        record = self.data.get(key)
        done = record.get("p10_passes", [record["p10_ms"]]) if record else []
        if len(done) >= self.passes:
            return {**record, "cached": True}
        from latency_models.measurement.device_runtime import example_input, make_session

        session = make_session(make_bytes(), threads=1, providers=self.target.providers)
        feed = {session.get_inputs()[0].name: example_input(shape)}
        for _ in range(5):
            session.run(None, feed)
        times = []
        for _ in range(self.runs):
            c0 = time.thread_time()
            session.run(None, feed)
            times.append((time.thread_time() - c0) * 1e3)
        t = np.array(times)
        passes = [*done, float(np.percentile(t, 10))]
        record = {"p10_ms": min(passes), "p10_passes": passes, "median_ms": float(np.median(t)),
                  "cv": float((np.percentile(t, 75) - np.percentile(t, 25)) / 1.349 / np.median(t)), "runs": len(t)}
        self.data[key] = record
        atomic_write_text(self.path, json.dumps(self.data))  # a kill mid-write keeps the cache whole
        return {**record, "cached": False}

    def network(self, arch):
        shape = (self.target.batch, 3, self.target.input_size, self.target.input_size)
        r = self.time(arch.to_string(), lambda: onnx_bytes(arch, self.target.input_size, self.target.batch), shape)
        return _Timed(r["p10_ms"], r["p10_ms"], r["cv"], r["cached"])

    def block(self, module, shape, key):
        from latency_models.measurement.onnx_export import export_module_bytes

        r = self.time(key, lambda: export_module_bytes(module, shape), shape)
        return _Timed(r["p10_ms"], r["p10_ms"], r["cv"], r["cached"], r["runs"])


class _Timed:
    def __init__(self, median_ms, p10_ms, cv, cached, runs=0):
        self.median_ms, self.p10_ms, self.cv, self.cached, self.runs, self.versions = median_ms, p10_ms, cv, cached, runs, {}


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="local-cpu")
    parser.add_argument("--targets-file", default=None)
    parser.add_argument("--train", type=int, default=50)
    parser.add_argument("--test", type=int, default=25)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--budget", type=float, default=1.0, help="timed seconds per measurement")
    parser.add_argument("--lut", action="store_true", help="also build and score the per-block lookup table")
    parser.add_argument("--block-budget", type=float, default=0.3, help="timed seconds per LUT block and sweep")
    parser.add_argument("--block-passes", type=int, default=BLOCK_PASSES,
                        help="sweeps over the LUT blocks (an entry is the geometric mean of its sweeps)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: the project's measure() (wall-clock medians); cpu: thread CPU time of the ORT "
                             "thread, 10th percentile (stable on a loaded shared machine)")
    parser.add_argument("--passes", type=int, default=1,
                        help="--clock cpu: measure every network this many times, spread out; keep the lowest")
    parser.add_argument("--retest", action="store_true",
                        help="measure every network a second time (bypassing the measurement cache; the second "
                             "medians are kept in $SHUFFLENAS_HOME/benchmarks/retest_*.json) and report how far apart "
                             "the two medians are, the noise floor of the measurement itself, and the scores against "
                             "the geometric mean of both")
    parser.add_argument("--out", default=None, help="write the markdown report here")
    args = parser.parse_args(argv)
    if args.retest and args.clock != "wall":
        parser.error("--retest compares two wall-clock measurements; it does not apply to --clock cpu")

    target = get_target(args.target, args.targets_file) if args.targets_file else get_target(args.target)
    archs = DEFAULT_SPACE.sample_many(args.train + args.test, seed=args.seed)
    train, test = archs[:args.train], archs[args.train:]
    load_before, started = _load(), time.time()
    measured, fastest, cvs, loads = [], [], [], []
    clock = CpuClock(target, passes=1) if args.clock == "cpu" else None
    for _ in range(args.passes - 1 if clock else 0):  # earlier passes, spread out in time
        for arch in archs:
            clock.network(arch)
        clock.passes += 1
    for i, arch in enumerate(archs, start=1):
        m = clock.network(arch) if clock else measure(arch, target, budget_s=args.budget)
        measured.append(m.median_ms)
        fastest.append(m.p10_ms)
        cvs.append(m.cv)
        loads.append(_load())
        print(f"[{i:3d}/{len(archs)}] {arch.arch_id} {m.median_ms:8.3f} ms cv {m.cv:.3f}"
              f"{' (cached)' if m.cached else ''}  load {loads[-1]:.2f}", file=sys.stderr, flush=True)
    size, batch = target.input_size, target.batch
    costs = [summary(a, size, batch=batch) for a in archs]
    flops = np.array([c["flops"] for c in costs], dtype=float)
    mac = np.array([c["mac"] for c in costs], dtype=float)
    table = None
    if args.lut:
        table = LookupTable(target, auto_extend=False)

        def on_block(i, n, block, m):
            print(f"  block [{i}/{n}] {block.key} {m.median_ms:.3f} ms", file=sys.stderr, flush=True)

        if clock:
            for i, block in enumerate(table.missing(archs), start=1):
                m = clock.block(block.module().eval(), block.input_shape(batch), f"lut:{block.key}")
                table.blocks[block.key] = {"ms": m.median_ms, "cv": m.cv, "runs": m.runs}
                on_block(i, 0, block, m)
        else:
            table.extend(archs, budget_s=args.block_budget, passes=args.block_passes, on_progress=on_block)
    y = np.array(measured)
    rows = _score(target, train, test, y, flops, mac, table)
    lut_misses = []
    if table is not None:  # the calibrated table's misses on the test set, smallest network first
        errors = [(float(m), float(table.predict(a) / m - 1)) for a, m in zip(test, y[args.train:])]
        lut_misses = sorted((m, e) for m, e in errors if abs(e) > 0.10)
    rows_p10 = _score(target, train, test, np.array(fastest), flops, mac, table) if not clock else None
    y_test = y[args.train:]
    from scipy.stats import kendalltau, spearmanr

    rank_rows = {}
    for name, x in (("FLOPs", flops), ("MAC (raw)", mac)):
        rank_rows[name] = {"test_spearman": float(spearmanr(x[args.train:], y_test).statistic),
                           "test_kendall": float(kendalltau(x[args.train:], y_test).statistic),
                           "all_spearman": float(spearmanr(x, y).statistic)}
    elapsed = time.time() - started
    lines = _report(args, target, rows, rank_rows, cvs, (load_before, max(loads), _load()), elapsed, len(archs))
    if rows_p10 is not None:
        lines += ["", "Same, scoring against each measurement's 10th-percentile run time (less sensitive to other "
                  "processes on a shared machine than the median):", "", *_table(rows_p10)]
    if table is not None:
        lines += ["", "Lookup-table misses (> +-10%) on the test set, as measured ms (error): "
                  + (", ".join(f"{m:.2f} ({100 * e:+.1f}%)" for m, e in lut_misses) or "none") + "."]
        lines += _sweep_lines(table, train, test, y)
    if args.retest:
        again = _retest(archs, target, args.budget)
        lines += ["", *_retest_summary(y, again)]
        pooled = np.sqrt(y * again)  # two measurements hours apart: half the variance of one
        lines += ["", "Same, scoring against the geometric mean of both measurements of every network (the "
                  "estimators are fitted on the pooled training networks too):", "",
                  *_table(_score(target, train, test, pooled, flops, mac, table))]
        lines += _sweep_lines(table, train, test, pooled, spread=False) if table is not None else []
    text = "\n".join(lines)
    print(text)
    if args.out:
        atomic_write_text(args.out, text + "\n")
    return 0


def _sweep_lines(table, train, test, y, spread: bool = True) -> list[str]:
    """With several LUT sweeps: how far apart a block's sweeps are (``spread``), and what the first sweep
    alone would score against ``y``."""
    swept = [b["passes_ms"] for b in table.blocks.values() if len(b.get("passes_ms", ())) > 1]
    if not swept:
        return []
    d = np.array([p[1] / p[0] - 1 for p in swept])
    first = copy.copy(table)
    first.blocks = {k: {**b, "ms": b.get("passes_ms", [b["ms"]])[0]} for k, b in table.blocks.items()}
    first.calibrate(train, list(y[:len(train)]))
    q = accuracy(y[len(train):], [first.predict(a) for a in test])
    return ["", (f"LUT sweeps: second / first block median over {len(swept)} blocks: std {100 * d.std():.2f}%, "
                 f"{100 * np.mean(abs(d) > 0.10):.1f}% of blocks more than 10% apart. " if spread else "")
            + f"The table from the first sweep alone (blocks + weights, fit on train): {100 * q['within_10']:.1f}% "
            f"({round(q['within_10'] * q['n'])}/{q['n']}) within +-10%, "
            f"{100 * q['within_5']:.0f}% within +-5%, MAPE {q['mape']:.1f}%."]


def _retest(archs, target, budget) -> np.ndarray:
    """Measure every network again, bypassing the measurement cache; the second medians are kept in
    their own file, so re-rendering a report does not measure them a third time (delete it to redo).
    A kept median is reused only for the same target settings, software and reference anchor."""
    path = cache_dir("benchmarks") / f"retest_{target.name}_{target.input_size}_{target.batch}.json"
    store = json.loads(path.read_text()) if path.exists() else {}
    anchor = reference_anchor(target).anchor_ms if target.reference else None
    stamp = json.dumps({"config": target.fingerprint(), "versions": software_versions(target), "anchor_ms": anchor},
                       sort_keys=True)
    again = []
    for i, arch in enumerate(archs, start=1):
        kept = store.get(arch.arch_id)
        cached = isinstance(kept, dict) and kept.get("stamp") == stamp
        if not cached:
            store[arch.arch_id] = {"median_ms": measure(arch, target, budget_s=budget, cache=False).median_ms,
                                   "stamp": stamp}
            atomic_write_text(path, json.dumps(store))
        again.append(store[arch.arch_id]["median_ms"])
        print(f"[retest {i:3d}/{len(archs)}] {arch.arch_id} {again[-1]:8.3f} ms{' (kept)' if cached else ''}",
              file=sys.stderr, flush=True)
    return np.array(again)


def _retest_summary(y, again) -> list[str]:
    """How far apart the two medians of every network are."""
    d = again / y - 1
    small = y < 3.0
    return [f"Retest: every network measured a second time (uncached) after the first pass. Second / first "
            f"median: median {1 + np.median(d):.3f}, std {100 * d.std():.2f}% (networks under 3 ms: "
            f"{100 * d[small].std():.2f}%, n={small.sum()}; 3 ms and over: {100 * d[~small].std():.2f}%); "
            f"{100 * np.mean(abs(d) > 0.05):.1f}% of networks more than 5% apart, "
            f"{100 * np.mean(abs(d) > 0.10):.1f}% more than 10%."]


def _score(target, train, test, y, flops, mac, table) -> dict[str, dict]:
    """Fit every estimator on the training rows of ``y`` and score it on the test rows."""
    n_train = len(train)
    y_train, y_test = y[:n_train], y[n_train:]
    size, batch = target.input_size, target.batch
    rows: dict[str, dict] = {}
    train_samples = [(architecture_layers(a, size), ms) for a, ms in zip(train, y_train)]
    plain = guideline_model.fit(train_samples, batch, target_name=target.name, input_size=size)
    rows["guideline, no alignment term"] = accuracy(y_test, [plain.predict(a) for a in test])
    fitted = guideline_model.fit(train_samples, batch, target_name=target.name, input_size=size, fit_alignment=True)
    rows["guideline (fit on train)"] = accuracy(y_test, [fitted.predict(a) for a in test])
    predictor = LatencyPredictor(target.name, size, batch, train, list(y_train), guideline=fitted)
    rows["predictor (GBR + guideline feature)"] = accuracy(y_test, predictor.predict_many(test))
    plain = LatencyPredictor(target.name, size, batch, train, list(y_train))
    rows["predictor (GBR, analytic features only)"] = accuracy(y_test, plain.predict_many(test))
    if table is not None:
        table.calibrate(train, list(y_train))
        rows["lut (blocks + weights, fit on train)"] = accuracy(y_test, [table.predict(a) for a in test])
        sums = np.array([table.block_sum(a) for a in train])
        two_terms = copy.copy(table)  # the same blocks, scale and offset only (no weight-streaming term)
        two_terms.scale, two_terms.ms_per_mparam, two_terms.offset = fit_terms(sums, np.zeros_like(sums), y_train)
        rows["lut (blocks, scale and offset only)"] = accuracy(y_test, [two_terms.predict(a) for a in test])
        rows["lut (raw block sum)"] = accuracy(y_test, [table.block_sum(a) for a in test])
    for name, x in (("FLOPs", flops), ("MAC", mac)):
        a, b = np.polyfit(x[:n_train], y_train, 1)
        rows[f"linear fit on {name}"] = accuracy(y_test, a * x[n_train:] + b)
    return rows


def _label(arch_text: str) -> str:
    from search_space import preset_name, resolve_arch

    return preset_name(resolve_arch(arch_text)) or arch_text


def _table(rows: dict[str, dict]) -> list[str]:
    lines = ["| estimator (fit on train only) | within +-10% | within +-5% | MAPE % | Spearman | Kendall |",
             "|---|---|---|---|---|---|"]
    for name, q in rows.items():
        lines.append(f"| {name} | {100 * q['within_10']:.1f}% ({round(q['within_10'] * q['n'])}/{q['n']}) | "
                     f"{100 * q['within_5']:.0f}% | {q['mape']:.1f} | "
                     f"{q['spearman']:.3f} | {q['kendall']:.3f} |")
    return lines


def _report(args, target, rows, rank_rows, cvs, loads, elapsed, n) -> list[str]:
    command = "python benchmarks/latency_accuracy.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    lines = [
        "# Latency model accuracy on held-out architectures", "",
        f"Command: `{command}`", "",
        f"Machine: 2-core x86 VM, shared ({platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}); date {_dt.date.today().isoformat()}; load average {loads[0]:.2f} at start, "
        f"max {loads[1]:.2f} during, {loads[2]:.2f} at end; {elapsed:.0f} s wall.", "",
        f"Target `{target.name}`: {target.description}; input {target.input_size}, batch {target.batch}. "
        f"{args.train} train / {args.test} test random architectures from the default space (seed {args.seed}), "
        + (f"{args.budget:g} s of timed runs per measurement (wall clock, median"
           + (f", reported at the anchored speed of the reference {_label(target.reference)}" if target.reference else "")
           + ")" if args.clock == "wall" else
           f"thread CPU time of the single ORT thread, lowest 10th percentile of 40 runs over {args.passes} "
           "pass(es) spread over the run")
        + f"; median measurement CV {np.median(cvs):.3f} "
        f"(max {np.max(cvs):.3f})."
        + (f" LUT blocks: {args.block_budget:g} s per block and sweep, {args.block_passes} sweep(s)."
           if args.lut and args.clock == "wall" else ""), "",
        *_table(rows),
    ]
    lines += ["", "| cost metric | Spearman (test) | Kendall (test) | Spearman (all) |", "|---|---|---|---|"]
    for name, q in rank_rows.items():
        lines.append(f"| {name} | {q['test_spearman']:.3f} | {q['test_kendall']:.3f} | {q['all_spearman']:.3f} |")
    best = max(rows.items(), key=lambda kv: (kv[1]["within_10"], -kv[1]["mape"]))
    n_test, hits = best[1]["n"], round(best[1]["within_10"] * best[1]["n"])
    lines += ["", f"Best estimate: {best[0]}, {hits}/{n_test} = {100 * best[1]['within_10']:.1f}% within +-10% "
              f"(nn-Meter reports 99.0% on a Pixel 4 CPU). Guideline Spearman "
              f"{rows['guideline (fit on train)']['spearman']:.3f} vs FLOPs {rank_rows['FLOPs']['test_spearman']:.3f}."]
    return lines


if __name__ == "__main__":
    sys.exit(main())
