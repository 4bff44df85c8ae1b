"""Framework overhead of the search driver per trial vs the time of a trial.

Overhead = ask + tell + bookkeeping (trial counts, reuse look-up, front size) + storage writes,
measured inside the real driver (SearchDriver.overhead_s); training and latency are excluded.
Two runs, side by side, on real SQLite storage:

1. the real thing: N trials of the default proxy (digits 16x16, 2 epochs), sequential evaluator,
   latency measured on local-cpu at 224 (first time, so not cached) and estimated for the paper
   targets; prints overhead per trial and its share of the mean trial wall time;
2. scaling: M more trials with instant evaluations (a real SequentialEvaluator whose training
   function returns at once) on a study that already holds many trials, so the per-trial
   bookkeeping cost at larger study sizes is visible;
3. a thousand-trial search (``--big-trials 1000``): instant evaluations on one study, the overhead
   per trial for each block of trials (split into the sampler's own time and the driver's), side by
   side with the time of one supernet score measured in the same run (``evaluator.supernet.scoring.
   score`` of default-space candidates on a freshly initialised supernet bank at the proxy input size:
   untrained, but it costs what a trained one does). ``--compare N`` runs N trials again with the
   write batching off (``experiments.storage.FAST_WRITES``: one commit per attr, SQLite's default
   journal) and times the per-trial front/count re-scan the driver did before on the big study.

    .venv/bin/python benchmarks/search_overhead.py --trials 6 --scale-trials 300
    .venv/bin/python benchmarks/search_overhead.py --skip-real --scale-trials 0 --big-trials 1000 --compare 100
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

from evaluator.datasets import load_dataset
from evaluator.proxy import ProxyResult
from evaluator.sequential import SequentialEvaluator
from experiments.config import load_config
from experiments.samplers import SAMPLERS
from experiments.search import SearchDriver


def instant(arch, data, config) -> ProxyResult:
    acc = (int(arch.arch_id, 16) % 1000) / 1000
    return ProxyResult(status="ok", accuracy=acc, val_curve=(acc,), loss_curve=(1.0,), train_time_s=0.0,
                       images_per_s=0.0, epochs_run=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--scale-trials", type=int, default=300)
    parser.add_argument("--skip-real", action="store_true", help="only part 2 (compares with --trial-s)")
    parser.add_argument("--trial-s", type=float, default=None, help="trial time to compare with when skipping part 1")
    parser.add_argument("--big-trials", type=int, default=0, help="part 3: trials of the big search (0: skip)")
    parser.add_argument("--block", type=int, default=100, help="part 3: trials per reported block")
    parser.add_argument("--samplers", default="nsga2", help="part 3: comma-separated samplers, one study each")
    parser.add_argument("--compare", type=int, default=0, help="part 3: trials run again with write batching off")
    parser.add_argument("--score-candidates", type=int, default=5, help="part 3: candidates scored by the supernet")
    args = parser.parse_args()
    for name in ("trials", "scale_trials", "big_trials", "block", "compare", "score_candidates"):
        if getattr(args, name) < 0 or (name in ("block", "score_candidates") and getattr(args, name) == 0):
            parser.exit(2, f"error: --{name.replace('_', '-')} must be positive, got {getattr(args, name)}\n")
    samplers = [n.strip() for n in args.samplers.split(",") if n.strip()]
    unknown = [n for n in samplers if n not in SAMPLERS]
    if unknown or not samplers:
        parser.exit(2, f"error: unknown sampler(s) {', '.join(unknown) or '(none)'} (known: {', '.join(SAMPLERS)})\n")
    root = Path(tempfile.mkdtemp(prefix="search-overhead-"))
    os.environ.setdefault("SHUFFLENAS_HOME", str(root / "home"))

    per_trial = args.trial_s or 0.0
    if not args.skip_real:
        per_trial = _real(args, root)
    if args.scale_trials:
        _scale(args, root, per_trial)
    if args.big_trials:
        _big(root, args.big_trials, args.block, samplers, args.compare, args.score_candidates)


def _real(args: argparse.Namespace, root: Path) -> float:
    config = load_config(None, {"out": str(root / "real"), "trials": args.trials, "workers": 1, "progress": False,
                                "presets": []})
    start = time.perf_counter()
    driver = SearchDriver(config)
    result = driver.run()
    wall = time.perf_counter() - start
    per_trial = wall / result.new_trials
    over = driver.overhead_s / result.new_trials
    print(f"1. real trials (digits 16x16, {config.proxy.epochs} epochs, local-cpu measured at 224): "
          f"{result.new_trials} trials, {per_trial:.1f} s/trial, overhead {over * 1000:.1f} ms/trial "
          f"= {100 * over / per_trial:.2f}% of a trial", flush=True)
    return per_trial


def _scale(args: argparse.Namespace, root: Path, per_trial: float) -> None:
    data = load_dataset("digits", None, 16, 0)
    scale = {"out": str(root / "scale"), "workers": 1, "progress": False, "presets": [],
             "targets": ["paper-arm-sd810"], "objectives": ["accuracy", "latency:paper-arm-sd810"], "sampler": "tpe"}
    marks = []
    for total in (args.scale_trials // 3, 2 * args.scale_trials // 3, args.scale_trials):
        driver = SearchDriver(load_config(None, {**scale, "trials": total}),
                              evaluator=SequentialEvaluator(data, train_fn=instant))
        start = time.perf_counter()
        res = driver.run()
        elapsed = time.perf_counter() - start
        marks.append((total, res.new_trials, driver.overhead_s / max(res.new_trials, 1), elapsed / max(res.new_trials, 1)))
    print("2. bookkeeping at larger study sizes (instant evaluations, estimate-only target, TPE sampler):")
    for total, new, over, wall in marks:
        print(f"   trials {total - new:4d}..{total:4d}: overhead {over * 1000:6.1f} ms/trial "
              f"(whole loop incl. estimate + sampler {wall * 1000:6.1f} ms/trial); "
              f"vs a {per_trial:.1f} s trial: {100 * over / max(per_trial, 1e-9):.2f}%")


# -- part 3: a thousand-trial search beside a supernet score -------------------------------------------
@dataclasses.dataclass
class Block:
    """One block of trials of the big search: overhead per trial, and the sampler's share of it."""

    first: int
    last: int
    overhead_s: float
    sampler_s: float
    wall_s: float


def timed_sampler(inner):
    """``inner`` with the time spent in it summed in ``.seconds`` (the sampler's share of ask and tell)."""
    import optuna

    class TimedSampler(optuna.samplers.BaseSampler):
        def __init__(self) -> None:
            self.inner = inner
            self.seconds = 0.0

        def _time(self, method: str, *args):
            start = time.perf_counter()
            try:
                return getattr(self.inner, method)(*args)
            finally:
                self.seconds += time.perf_counter() - start

        def infer_relative_search_space(self, study, trial):
            return self._time("infer_relative_search_space", study, trial)

        def sample_relative(self, study, trial, search_space):
            return self._time("sample_relative", study, trial, search_space)

        def sample_independent(self, study, trial, name, distribution):
            return self._time("sample_independent", study, trial, name, distribution)

        def before_trial(self, study, trial):
            return self._time("before_trial", study, trial)

        def after_trial(self, study, trial, state, values):
            return self._time("after_trial", study, trial, state, values)

        def reseed_rng(self) -> None:
            self.inner.reseed_rng()

    return TimedSampler()


def score_seconds(candidates: int) -> tuple[float, str]:
    """Median time of ``evaluator.supernet.scoring.score`` on default-space candidates: a freshly
    initialised supernet bank of the default space at the proxy's input size, the supernet
    evaluator's default BN batches, one thread (its default)."""
    import statistics

    import torch

    from evaluator.supernet import Supernet
    from evaluator.supernet.scoring import ScoringData, score
    from experiments.config import SearchConfig
    from search_space import DEFAULT_SPACE

    c = SearchConfig()
    data = load_dataset(c.proxy.dataset, None, c.proxy.input_size, 0)
    torch.manual_seed(0)
    supernet = Supernet(DEFAULT_SPACE, data.num_classes, c.proxy.input_size)
    scoring = ScoringData.from_split(data, bn_batches=c.supernet.bn_batches, val_size=c.supernet.val_size)
    archs = DEFAULT_SPACE.sample_many(candidates + 1, seed=1)
    score(supernet, archs[0], scoring, threads=c.supernet.threads)  # warm-up (allocator, kernels)
    times = [score(supernet, a, scoring, threads=c.supernet.threads).seconds for a in archs[1:]]
    what = (f"{c.proxy.dataset} at {c.proxy.input_size} px, {scoring.bn_x.shape[0]} BN + {scoring.val_x.shape[0]} "
            f"validation images, {c.supernet.threads} thread; {min(times):.2f}-{max(times):.2f} s over {len(times)}")
    return statistics.median(times), what


def _grow(out: Path, sampler: str, total: int, block: int, data, sized_for: int) -> list[Block]:
    """Run one study to ``total`` trials, ``block`` at a time, timing each block; the sampler is
    sized for a search of ``sized_for`` trials (NSGA-II's population), as in one run of that many."""
    import experiments.study_handling as handling

    made = []

    def make(name, seed, trials, n_objectives):
        made.append(timed_sampler(SAMPLERS.get(name)(seed, trials, n_objectives)))
        return made[-1]

    options = {"out": str(out), "workers": 1, "progress": False, "presets": [], "seed": 0, "sampler": sampler,
               "targets": ["paper-arm-sd810"], "objectives": ["accuracy", "latency:paper-arm-sd810"]}
    blocks = []
    original = handling.make_sampler
    handling.make_sampler = make
    try:
        for last in range(block, total + block, block):
            last = min(last, total)
            config = load_config(None, {**options, "trials": sized_for})
            config = dataclasses.replace(config, trials=last)
            driver = SearchDriver(config, evaluator=SequentialEvaluator(data, train_fn=instant))
            start = time.perf_counter()
            result = driver.run()
            new = max(result.new_trials, 1)
            blocks.append(Block(last - result.new_trials, last, driver.overhead_s / new, made[-1].seconds / new,
                                (time.perf_counter() - start) / new))
            if last >= total:
                break
    finally:
        handling.make_sampler = original
    return blocks


def _old_bookkeeping(storage_url: str) -> float:
    """Seconds of what the driver did per trial before: the front taken from every trial
    (``front_numbers``) and the counts from every trial, on the study as it is now."""
    import optuna
    from optuna.trial import TrialState

    from experiments.report import front_numbers
    from experiments.storage import open_storage

    storage = open_storage(storage_url, create=False)
    study = optuna.load_study(study_name=storage.get_all_studies()[0].study_name, storage=storage)
    study.get_trials(deepcopy=False)  # fill the cache first, as the running driver had
    start = time.perf_counter()
    front_numbers(study)
    for _ in range(2):  # the loop's count and the progress line's
        sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))
            if t.state == TrialState.COMPLETE or not t.user_attrs.get("requeued"))
    return time.perf_counter() - start


def _big(root: Path, total: int, block: int, samplers: list[str], compare: int, candidates: int) -> None:
    import experiments.storage as storage_module
    from experiments.samplers import nsga2_population

    score_s, what = score_seconds(candidates)
    print(f"3. a {total}-trial search, instant evaluations (estimate-only target), overhead per trial by block, "
          f"beside one supernet score measured here: {score_s:.2f} s median ({what})", flush=True)
    data = load_dataset("digits", None, 16, 0)
    runs = [(name, True, total) for name in samplers]
    if compare:
        runs.append((samplers[0], False, min(compare, total)))
    for name, fast, trials in runs:
        storage_module.FAST_WRITES = fast
        try:
            out = root / f"big-{name}-{'fast' if fast else 'slow'}"
            blocks = _grow(out, name, trials, min(block, trials), data, total)
        finally:
            storage_module.FAST_WRITES = True
        extra = f", population {nsga2_population(total)}" if name == "nsga2" else ""
        how = "writes batched, WAL" if fast else "write batching off (one commit per attr, default journal)"
        print(f"   {name}{extra}, {how}:")
        for b in blocks:
            print(f"     trials {b.first:5d}..{b.last:5d}: overhead {b.overhead_s * 1000:6.1f} ms/trial "
                  f"(sampler {b.sampler_s * 1000:6.1f}, driver {(b.overhead_s - b.sampler_s) * 1000:6.1f}) = "
                  f"{100 * b.overhead_s / score_s:5.2f}% of a score, driver alone "
                  f"{100 * (b.overhead_s - b.sampler_s) / score_s:5.2f}%; whole loop {b.wall_s * 1000:6.1f} ms/trial",
                  flush=True)
        if fast and trials == total:
            old = _old_bookkeeping(f"sqlite:///{out / 'study.db'}")
            print(f"     the per-trial re-scan of the earlier driver (front + counts from every trial) on this "
                  f"{trials}-trial study: {old * 1000:.1f} ms/trial = {100 * old / score_s:.2f}% of a score", flush=True)
    again, _ = score_seconds(candidates)  # the machine's load may have changed meanwhile
    print(f"   the supernet score measured again after the searches: {again:.2f} s median (before: {score_s:.2f} s)")


if __name__ == "__main__":
    main()
