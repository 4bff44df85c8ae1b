"""Ray speed-up: 2 x N candidates on 2 one-thread Ray workers vs one process with 2 threads.

Small CPU models parallelise badly inside one process (intra-op threads on 16x16 maps), and well
across processes; this measures by how much. Both sides are warmed up first (Ray start and worker
imports are reported separately, not counted); repeats alternate sequential and Ray.

    .venv/bin/python benchmarks/ray_speedup.py [--n 4] [--repeats 2] [--one-thread]
"""

from __future__ import annotations

import argparse
import statistics
import time

from evaluator import EvalTask, ProxyConfig, SequentialEvaluator, load_dataset
from search_space import SearchSpace

#: a corner of the search space whose candidates train in a second or two each
SMALL_SPACE = SearchSpace(width_ranges=((24, 96), (48, 192), (96, 384)), depth_ranges=((1, 3), (2, 4), (1, 3)),
                          conv5_choices=(256, 512, 1024))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one-thread", action="store_true", help="also time one process with 1 thread")
    parser.add_argument("--n", type=int, default=4, help="candidates per worker (2 x N in all)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-train-batches", type=int, default=8)
    parser.add_argument("--address", default=None, help="an existing Ray cluster (default: start a local one)")
    args = parser.parse_args()

    from evaluator.ray_evaluator import RayEvaluator

    data = load_dataset("digits", input_size=16)
    archs = SMALL_SPACE.sample_many(2 * args.n, seed=0)
    config = ProxyConfig(epochs=1, max_train_batches=args.max_train_batches)
    tasks = [EvalTask(i, arch, config) for i, arch in enumerate(archs)]
    seq_tasks = [EvalTask(t.key, t.arch, config.replace(threads=2)) for t in tasks]

    start = time.perf_counter()
    ray_ev = RayEvaluator(data, address=args.address, max_in_flight=2, threads_per_task=1)
    ray_ev.run_all([EvalTask(f"warm{i}", archs[0], config.replace(max_train_batches=1)) for i in range(2)])
    startup = time.perf_counter() - start
    seq_ev = SequentialEvaluator(data)
    seq_ev.run_all([EvalTask("warm", archs[0], config.replace(threads=2, max_train_batches=1))])

    one_thread = "sequential (1 process, 1 thread)"
    runs = [("sequential (1 process, 2 threads)", seq_ev, seq_tasks), ("ray (2 workers x 1 thread)", ray_ev, tasks)]
    if args.one_thread:
        runs.append((one_thread, seq_ev, tasks))
    times: dict[str, list[float]] = {name: [] for name, _, _ in runs}
    try:
        for rep in range(args.repeats):
            for name, ev, batch in runs if rep % 2 == 0 else reversed(runs):
                tick = time.perf_counter()
                outcomes = ev.run_all(batch)
                times[name].append(time.perf_counter() - tick)
                failed = [o for o in outcomes if not o.ok]
                assert len(outcomes) == len(batch) and not failed, failed
    finally:
        ray_ev.close()
    print(f"{len(tasks)} candidates (SMALL_SPACE, digits 16x16, 1 epoch x {args.max_train_batches} batches of 64); "
          f"{args.repeats} alternating repeats; Ray start + worker warm-up {startup:.1f} s (not counted)")
    for name, values in times.items():
        print(f"  {name:<36} median {statistics.median(values):7.2f} s   runs: " + " ".join(f"{v:.2f}" for v in values))
    seq, ray = (statistics.median(times[name]) for name, _, _ in runs[:2])
    print(f"speed-up ray / sequential with 2 threads: {seq / ray:.2f}x (target >= 1.6x)")
    if args.one_thread:
        print(f"speed-up ray / sequential with 1 thread: {statistics.median(times[one_thread]) / ray:.2f}x")


if __name__ == "__main__":
    main()
