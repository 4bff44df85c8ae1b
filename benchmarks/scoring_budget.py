"""How much scoring a supernet candidate needs: ranking fidelity over BN batches x validation images.

A supernet score is extract + BatchNorm recalibration on ``bn`` batches of 128 training images +
top-1 on the first ``val`` validation images. For every candidate of the fidelity benchmark's
``candidates.csv`` and every ``--bn`` it recalibrates once and validates on the whole split, then
reads the accuracy of each ``--val`` prefix, so the grid costs one score per BN setting. Each cell's
Kendall tau is against the fidelity benchmark's mean reference accuracy (its ``rows.csv``), with the
mean seconds of recalibration and of validation per candidate beside it. Writes
``scoring_budget.csv`` (one row per supernet, candidate and setting; rows of other supernets already
there are kept) into ``--out``, and prints the table. Data, split and calibration images are those
of ``accuracy_fidelity.py supernet``; flags this
script does not know go to that benchmark's parser (give the ones its report was run with).

    .venv/bin/python benchmarks/scoring_budget.py --supernet spos-ids20=runs/supernet/ids20 \\
        --fidelity benchmarks/results/fidelity --ref-epochs 3
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy_fidelity import RowStore, _corr, _supernet_arg, build_run, fidelity  # noqa: E402
from accuracy_fidelity import parser as fidelity_parser  # noqa: E402
from evaluator.proxy import recalibrate_bn  # noqa: E402
from latency_models.atomic import atomic_write_csv  # noqa: E402
from evaluator.supernet.scoring import BN_BATCH, ScoringData, check_fits  # noqa: E402
from search_space.errors import ShufflenasError  # noqa: E402

FIELDS = ["supernet", "checksum", "label", "arch_id", "bn_batches", "val_size", "accuracy", "bn_s", "val_s_per_image"]


def score_grid(name: str, folder: str, cands, data, bns: list[int], vals: list[int]) -> list[dict[str, object]]:
    """One row per candidate x BN batches x validation prefix (see the module docstring)."""
    from evaluator.supernet.store import load_supernet

    supernet, info = load_supernet(folder)
    info.check_data(data)
    check_fits(supernet, data)
    full = ScoringData.from_split(data, bn_batches=max(bns), val_size=None)
    rows = []
    for done, cand in enumerate(cands, 1):
        supernet.check(cand.arch)
        model = supernet.extract(cand.arch)
        for bn in bns:
            started = time.perf_counter()
            recalibrate_bn(model, full.bn_x[:bn * BN_BATCH], BN_BATCH)
            bn_s = time.perf_counter() - started
            model.eval()
            started = time.perf_counter()
            with torch.inference_mode():
                logits = torch.cat([model(full.val_x[i:i + 500]) for i in range(0, full.val_x.shape[0], 500)])
            per_image = (time.perf_counter() - started) / full.val_x.shape[0]
            correct = (logits.argmax(1) == full.val_y).float()
            for val in vals:
                rows.append({"supernet": name, "checksum": info.checksum, "label": cand.label, "arch_id": cand.arch_id,
                             "bn_batches": bn, "val_size": min(val, correct.numel()),
                             "accuracy": round(float(correct[:val].mean()), 5), "bn_s": round(bn_s, 4),
                             "val_s_per_image": round(per_image, 7)})
        print(f"  [{name}] {cand.label} ({done}/{len(cands)})", flush=True)
    return rows


def table(rows: list[dict[str, object]], reference: dict[str, float]) -> str:
    lines = ["| supernet | BN batches | val images | Kendall tau | s per score (extract excluded) |", "|---|---|---|---|---|"]
    keys = sorted({(r["supernet"], r["bn_batches"], r["val_size"]) for r in rows})
    for name, bn, val in keys:
        cell = [r for r in rows if (r["supernet"], r["bn_batches"], r["val_size"]) == (name, bn, val)]
        ids = [r["arch_id"] for r in cell if r["arch_id"] in reference]
        tau = _corr("kendall", [r["accuracy"] for r in cell if r["arch_id"] in reference], [reference[i] for i in ids])
        seconds = statistics.fmean(float(r["bn_s"]) + float(r["val_s_per_image"]) * int(r["val_size"]) for r in cell)
        lines.append(f"| {name} | {bn} | {val} | {tau:+.3f} | {seconds:.2f} |")
    return "\n".join(lines)


def _one_supernet(text: str) -> tuple[str, str]:
    """NAME=DIR of one supernet (the grid times one model per setting; an ensemble is not gridded)."""
    name, folders = _supernet_arg(text)
    if len(folders) != 1:
        raise argparse.ArgumentTypeError(f"--supernet takes NAME=DIR of one supernet here, got {text!r}")
    return name, folders[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--supernet", type=_one_supernet, action="append", required=True, metavar="NAME=DIR")
    parser.add_argument("--fidelity", default="benchmarks/results/fidelity",
                        help="the fidelity benchmark's folder (candidates.csv, rows.csv with the reference)")
    parser.add_argument("--bn", type=int, nargs="+", default=[1, 2, 4, 8, 16], help="BN batches of 128")
    parser.add_argument("--val", type=int, nargs="+", default=[250, 500, 1000, 2500], help="validation images")
    parser.add_argument("--out", default=None, help="where scoring_budget.csv goes [default: --fidelity]")
    args, fidelity_flags = parser.parse_known_args(argv)  # the rest: accuracy_fidelity.py's flags
    torch.set_num_threads(1)
    try:
        if min(args.bn) < 1 or min(args.val) < 1:
            raise ShufflenasError("--bn and --val must be >= 1")
        run = build_run(fidelity_parser().parse_args(["report", "--out", args.fidelity, *fidelity_flags]))
        _, _, reference, _, _ = fidelity(run, RowStore(run.out / "rows.csv"))  # the report's mean reference
        if not reference:
            raise ShufflenasError(f"no reference rows in {run.out / 'rows.csv'}: run accuracy_fidelity.py reference first")
        data = run.data_args.load()
        rows = []
        for name, folder in args.supernet:
            rows += score_grid(name, folder, run.cands, data, sorted(set(args.bn)), sorted(set(args.val)))
    except (ShufflenasError, ValueError, OSError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    out = Path(args.out or args.fidelity)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "scoring_budget.csv"
    names = {name for name, _ in args.supernet}
    kept = []  # the rows of other supernets stay; this run's supernets are replaced
    if path.exists():
        with path.open(newline="") as fh:
            kept = [r for r in csv.DictReader(fh) if r.get("supernet") not in names]
    atomic_write_csv(path, FIELDS, kept + rows)  # a kill leaves the old file whole, never a torn one
    print(f"{len(run.cands)} candidates; {data.train_size} training / {data.val_size} validation images at "
          f"{data.input_size} px (split {Fraction(run.data_args.val_fraction).limit_denominator(100)}); 1 thread")
    print(table(rows, reference))
    print(f"rows: {out / 'scoring_budget.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
