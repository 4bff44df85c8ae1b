"""Paper reproduction check: does a model fitted on the guideline micro-benchmarks alone predict
the paper's whole networks?

For each paper device (GTX 1080Ti, Snapdragon 810): fit the guideline model on Tables 1-4 ONLY,
predict Table 8's ShuffleNetV2 rows (0.5x, 1.0x, 1.5x, 2.0x, 2.0x+SE) out of sample, and print
per-network errors and the rank correlation, next to the in-sample fit of the shipped
calibrations (which also see Table 8) and the rank correlation of FLOPs with the paper's speeds.
MobileNetV2, ShuffleNetV1 and Xception rows are not predicted: the project cannot build them.

    .venv/bin/python benchmarks/paper_reproduction.py [--out benchmarks/results/paper_reproduction.md]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from latency_models.estimation.quality import fmt  # noqa: E402
from latency_models.atomic import atomic_write_text  # noqa: E402
from latency_models.paper import paper_data  # noqa: E402
from latency_models.costs.analytic import architecture_layers, summary  # noqa: E402
from latency_models.estimation.calibrate import PAPER_TARGETS, fit_paper_calibration, network_quality  # noqa: E402
from latency_models.estimation.guideline import load_file  # noqa: E402
from latency_models.paths import SHIPPED_CALIBRATIONS  # noqa: E402
from search_space import get_preset  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/paper_reproduction.py"


def device_report(device: str) -> list[str]:
    micro = fit_paper_calibration(device, tables=paper_data.MICRO_TABLES)
    shipped = load_file(SHIPPED_CALIBRATIONS / f"{PAPER_TARGETS[device]}.json")
    out_of_sample = network_quality(micro, device)
    in_sample = network_quality(shipped, device)
    unit = paper_data.UNITS[device]
    lines = [f"## {'GPU (GTX 1080Ti, batch 8)' if device == 'gpu' else 'ARM (Snapdragon 810, batch 1)'}", "",
             f"Micro-benchmark-only fit (Tables 1-4, n={micro.quality['fit']['n']}): in-sample MAPE "
             f"{fmt(micro.quality['fit']['mape'], '.2f')}%, Spearman {fmt(micro.quality['fit']['spearman'], '.4f')}.", "",
             "Parameters (micro only): " + ", ".join(f"{k}={v:g}" for k, v in micro.params.to_dict().items()), "",
             f"| network | paper {unit} | paper ms/batch | predicted from Tables 1-4 (ms) | error | shipped calibration, in-sample (ms) | error |",
             "|---|---|---|---|---|---|---|"]
    speeds = paper_data.network_speeds(device)
    for out_row, in_row in zip(out_of_sample["networks"], in_sample["networks"]):
        lines.append(f"| {out_row['preset']} | {speeds[out_row['preset']]:g} | {out_row['paper_ms']:.3f} | "
                     f"{out_row['predicted_ms']:.3f} | {out_row['error_pct']:+.1f}% | {in_row['predicted_ms']:.3f} | "
                     f"{in_row['error_pct']:+.1f}% |")
    lines += ["", "| summary over the 5 networks | MAPE | max error | Spearman (ms) |", "|---|---|---|---|",
              f"| out of sample (Tables 1-4 only) | {fmt(out_of_sample['mape'], '.2f')}% | {fmt(out_of_sample['max_error'], '.2f')}% | "
              f"{fmt(out_of_sample['spearman'], '.4f')} |",
              f"| shipped calibration, in-sample (Tables 1-4 + 8) | {fmt(in_sample['mape'], '.2f')}% | {fmt(in_sample['max_error'], '.2f')}% | "
              f"{fmt(in_sample['spearman'], '.4f')} |"]
    held = shipped.quality.get("heldout")
    if held:
        lines.append(f"| shipped recipe, leave one Table 8 network out | {fmt(held['mape'], '.2f')}% | {fmt(held['max_error'], '.2f')}% | "
                     f"{fmt(held['spearman'], '.4f')} |")
    # FLOPs vs the paper's speed: the 5 buildable networks (our FLOPs) and all 9 rows (paper MFLOPs)
    presets = list(speeds)
    flops = [summary(get_preset(p))["flops"] for p in presets]
    ms = [paper_data.to_ms(speeds[p]) for p in presets]
    guideline_ms = [shipped.predict_layers(architecture_layers(get_preset(p), 224), paper_data.NETWORK_BATCH[device])
                    for p in presets]
    column = 3 if device == "gpu" else 4
    all_flops = [row[1] for row in paper_data.TABLE8.values()]
    all_ms = [paper_data.to_ms(row[column]) for row in paper_data.TABLE8.values()]
    lines += ["", "| rank correlation with the paper's ms/batch | Spearman |", "|---|---|",
              f"| FLOPs, 5 ShuffleNetV2 rows | {spearmanr(flops, ms).statistic:.3f} |",
              f"| guideline model (micro only), 5 ShuffleNetV2 rows | {fmt(out_of_sample['spearman'], '.4f')} |",
              f"| guideline model (shipped), 5 ShuffleNetV2 rows | {spearmanr(guideline_ms, ms).statistic:.3f} |",
              f"| paper MFLOPs, all 9 Table 8 rows (MobileNetV2, ShuffleNetV1, Xception included) | "
              f"{spearmanr(all_flops, all_ms).statistic:.3f} |", ""]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "paper_reproduction.md"))
    args = parser.parse_args(argv)
    lines = ["# Paper reproduction: guideline model fitted on Tables 1-4, Table 8 predicted out of sample", "",
             f"Command: `{COMMAND}` (deterministic: no measurement, only the paper's figures). Machine: 2-core x86 VM, shared.",
             "", "Tables 1-4 are read at batch 1 on both devices (see latency_models/paper/paper_data.py), Table 8 at "
             "batch 8 (GPU) and 1 (ARM). MobileNetV2, ShuffleNetV1 and Xception are not built by this project, so "
             "only the ShuffleNetV2 rows (and 2.0x+SE = preset `2.0x-se`) are predicted.", ""]
    for device in paper_data.DEVICES:
        lines += device_report(device)
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    atomic_write_text(out, text)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
