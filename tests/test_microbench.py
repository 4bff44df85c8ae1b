"""The G1-G4 micro-benchmarks: one description, two forms (torch module and analytic layers)."""

from __future__ import annotations

import pytest
import torch

from latency_models.paper import microbench

from latency_models.paper import paper_data
from latency_models.costs.analytic import layer_costs
from search_space import count_parameters
from search_space.errors import ShufflenasError


@pytest.mark.parametrize("column", ["gpu", "arm"])
def test_every_cell_has_matching_params_and_runs(column):
    benches = microbench.benchmarks(column)
    assert len(benches) == 3 * (4 + 4 + 5 + 4)  # 51 cells of Tables 1-4
    assert len({b.key for b in benches}) == len(benches)
    for bench in benches:
        table = layer_costs(bench.layers())
        assert int(table["params"].sum()) == count_parameters(bench.module()), bench.key


def test_modules_run_and_keep_their_shape():
    for bench in microbench.quick_benchmarks("arm"):
        x = torch.randn(1, *bench.input_shape)
        with torch.no_grad():
            y = bench.module()(x)
        assert y.shape == x.shape, bench.key


def test_equal_flops_within_each_guideline():
    # G1-G3 hold FLOPs (nearly) fixed within a row group; G4's variants share their convs
    for guideline, tolerance in (("G1", 0.06), ("G2", 0.05), ("G3", 0.02)):
        flops = [layer_costs(b.layers())["flops"].sum() for b in microbench.benchmarks("gpu", ("x1",), (guideline,))]
        assert max(flops) / min(flops) - 1 < tolerance, guideline


def test_g1_mac_grows_with_imbalance_and_g2_with_groups():
    mac = [layer_costs(b.layers())["mac"].sum() for b in microbench.benchmarks("gpu", ("x1",), ("G1",))]
    assert mac == sorted(mac)
    mac = [layer_costs(b.layers())["mac"].sum() for b in microbench.benchmarks("gpu", ("x1",), ("G2",))]
    assert mac == sorted(mac)


def test_channel_counts_follow_the_paper():
    g1 = microbench.benchmarks("gpu", ("x2",), ("G1",))
    assert [(b.block.convs[0].c_in, b.block.convs[0].c_out) for b in g1] == [(256, 256), (180, 360), (104, 624), (72, 864)]
    arm = microbench.benchmarks("arm", ("x1",), ("G1",))
    assert arm[0].paper_arm == 76.2 and arm[0].paper_gpu == 1480
    g2 = microbench.benchmarks("arm", ("x1",), ("G2",))
    assert [b.block.convs[0].c_in for b in g2] == [64, 90, 128, 184]  # 180 rounded to a multiple of 8
    g4 = microbench.benchmarks("gpu", ("x1",), ("G4",))
    kinds = [[layer.kind for layer in b.layers()[:5]] for b in g4]
    assert kinds[0] == ["conv", "conv", "conv", "add", "relu"] and "add" not in kinds[1]
    assert g4[3].describe().startswith(f"{paper_data.MICRO_BLOCKS} x [bottleneck c=32 relu=no shortcut=no]")


def test_bad_names_are_user_errors():
    with pytest.raises(ShufflenasError):
        microbench.benchmarks("tpu")
    with pytest.raises(ShufflenasError):
        microbench.benchmarks("gpu", ("x3",))
