"""Across families: the paper's Table 8 networks (ShuffleNetV2, MobileNetV2, ShuffleNetV1, Xception) side by side.

``shufflenas study flops-vs-speed --family`` adds these presets to the sampled architectures. Two
tables come out of them: pairs of networks from *different* families whose FLOPs agree within the
study's tolerance, with their latency ratio (the paper's point: same FLOPs, different speed), and
the Table 8 comparison: the paper's MFLOPs and speeds (ms per batch) beside this project's FLOPs and
each target's latency. The paper's figures come from :mod:`latency_models.paper.paper_data`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from latency_models.paper import paper_data
from search_space import PRESETS, Architecture
from search_space.presets import FAMILIES, FAMILY_PRESETS

#: Label of a row that is not a preset (sampled from the search space).
SAMPLED = "sampled"


def family_architectures() -> list[Architecture]:
    """Every Table 8 network this project builds: the ShuffleNetV2 rows and the other families' presets."""
    names = [row.preset for row in paper_data.table8_rows()]
    names += [name for name in FAMILY_PRESETS if name not in names]
    return [PRESETS[name] for name in names]


def family_label(preset: str) -> str:
    """The family of a preset name ('' or unknown: a sampled architecture)."""
    return FAMILIES.get(preset, SAMPLED) if preset else SAMPLED


def cross_family_pairs(table: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """Per target, every pair of presets from different families with FLOPs within ``tolerance``."""
    columns = ["target", "fast_preset", "slow_preset", "fast_family", "slow_family", "fast_mflops",
               "slow_mflops", "flops_diff_pct", "fast_ms", "slow_ms", "latency_ratio", "source"]
    rows = []
    named = table[table["preset"] != ""]
    for target, group in named.groupby("target", sort=False):
        items = list(group[["preset", "flops", "latency_ms", "source"]].itertuples(index=False))
        for i, a in enumerate(items):
            for b in items[i + 1:]:
                if family_label(a.preset) == family_label(b.preset):
                    continue
                if max(a.flops, b.flops) > min(a.flops, b.flops) * (1 + tolerance):
                    continue
                fast, slow = (a, b) if a.latency_ms <= b.latency_ms else (b, a)
                rows.append({"target": target, "fast_preset": fast.preset, "slow_preset": slow.preset,
                             "fast_family": family_label(fast.preset), "slow_family": family_label(slow.preset),
                             "fast_mflops": fast.flops / 1e6, "slow_mflops": slow.flops / 1e6,
                             "flops_diff_pct": 100 * abs(a.flops - b.flops) / min(a.flops, b.flops),
                             "fast_ms": fast.latency_ms, "slow_ms": slow.latency_ms,
                             "latency_ratio": slow.latency_ms / fast.latency_ms, "source": fast.source})
    out = pd.DataFrame(rows, columns=columns)
    return out.sort_values(["target", "latency_ratio"], ascending=[True, False], kind="stable").reset_index(drop=True)


def table8_comparison(table: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 8 rows present in ``table``: paper MFLOPs and ms per batch beside ours, per target.

    ``paper_gpu_ms`` is per batch of 8 (GTX 1080Ti), ``paper_arm_ms`` per image (Snapdragon 810);
    each ``<target> ms`` column is that target's latency at its own batch (see ``source``).
    """
    rows = []
    for row in paper_data.table8_rows():
        here = table[table["preset"] == row.preset]
        if here.empty:
            continue
        entry = {"model": row.model, "preset": row.preset, "family": family_label(row.preset),
                 "paper_mflops": row.mflops, "mflops": float(here["flops"].iloc[0]) / 1e6,
                 "paper_top1_err": np.nan if row.top1_err is None else row.top1_err,
                 "paper_gpu_ms": paper_data.to_ms(row.gpu), "paper_arm_ms": paper_data.to_ms(row.arm),
                 "in_calibration": row.calibrated}
        for _, r in here.iterrows():
            entry[f"{r['target']} ms"] = float(r["latency_ms"])
        rows.append(entry)
    return pd.DataFrame(rows)


def families_markdown(table: pd.DataFrame, tolerance: float, md_table) -> list[str]:
    """The summary's two family sections (empty when the study ran without ``--family``)."""
    lines: list[str] = []
    pairs = cross_family_pairs(table, tolerance)
    if len(pairs):
        view = pairs[["target", "fast_preset", "slow_preset", "fast_mflops", "slow_mflops", "fast_ms", "slow_ms",
                      "latency_ratio", "source"]]
        lines += [f"## Same FLOPs (within +-{tolerance:.0%}), different families", "", md_table(view, "{:.2f}"), ""]
        for target, group in pairs.groupby("target", sort=False):
            top = group.iloc[0]
            lines.append(f"- {target} ({top['source']}): {top['slow_preset']} ({top['slow_family']}) is "
                         f"{top['latency_ratio']:.2f}x slower than {top['fast_preset']} ({top['fast_family']}) "
                         f"at {top['flops_diff_pct']:.1f}% FLOPs difference.")
        lines.append("")
    t8 = table8_comparison(table)
    if len(t8) and (t8["family"] != "shufflenetv2").any():
        lines += ["## Table 8 networks: the paper's figures and this study's", "",
                  ("Paper speeds as ms per batch (GPU: batch 8, ARM: batch 1). Rows with in_calibration False "
                   "were not seen by the shipped paper calibrations, so their paper-target estimates are "
                   "out of sample."), "", md_table(t8, "{:.2f}"), ""]
    return lines
