"""Sizes are bounded before anything is allocated: closed-form element counts checked against the
analytic layer list and against torch, and every allocating entry point (build_model, ONNX export,
proxy training) refusing, with one line, what this machine cannot hold."""

from __future__ import annotations

import dataclasses
import random

import pytest

from evaluator.datasets import load_dataset
from evaluator.proxy import ProxyConfig, train_proxy
from latency_models.costs.analytic import architecture_layers, parameter_count
from latency_models.costs.memory import MemoryBudgetError, estimate_bytes, require_fits
from latency_models.measurement.onnx_export import ONNX_LIMIT_BYTES, OnnxSizeError, check_exportable, export_bytes
from search_space import PRESETS, Architecture, SearchSpace, build_model, count_parameters
from search_space.errors import ShufflenasError
from search_space.sizes import available_memory, format_bytes, model_size

HUGE = Architecture.from_string("stem24_w8192-8192-8192_d64-64-64")  # the top of the string form's ranges
TINY = Architecture(widths=(8, 8, 8), depths=(1, 1, 1), stem=8, conv5=8)
#: More classes than any machine has memory for (4 bytes x 1024 x 1e11 = 400 TB of weights).
ABSURD_CLASSES = 10**11
WIDE_SPACE = SearchSpace(kernel_choices=(3, 5, 7), se_choices=(False, True), extra_dw_choices=(False, True),
                         split_ratios=(0.25, 0.5, 0.75))


def _archs() -> list[Architecture]:
    return list(PRESETS.values()) + WIDE_SPACE.sample_many(40, seed=11) + [HUGE, TINY]


# -- the closed form is the analytic layer list, summed ---------------------------------------------
@pytest.mark.parametrize("input_size", [8, 16, 63, 64, 97, 224])
def test_model_size_matches_the_analytic_layers(input_size):
    for arch in _archs():
        layers = architecture_layers(arch, input_size, 10)
        size = model_size(arch, input_size, 10)
        assert size.params == sum(layer.costs()["params"] for layer in layers), arch
        assert size.outputs == sum(layer.out_elems for layer in layers), arch
        assert size.peak == max(layer.in_elems + layer.out_elems for layer in layers), arch
        convs = sum(layer.out_elems for layer in layers if layer.kind == "conv" and layer.bn)
        assert size.saved == size.outputs + convs
        assert size.input == 3 * input_size * input_size


def test_model_size_matches_torch():
    rng = random.Random(5)
    for arch in [PRESETS["0.5x"], PRESETS["2.0x-se"], PRESETS["1.0x*"]] + WIDE_SPACE.sample_many(4, seed=2):
        classes = rng.choice([1, 10, 1000])
        model = build_model(arch, classes, 32)
        size = model_size(arch, 32, classes)
        assert size.params == count_parameters(model)
        assert size.buffers == sum(b.numel() for name, b in model.named_buffers() if "running" in name)


def test_preset_parameter_counts_are_unchanged():
    assert model_size(PRESETS["1.0x"]).params == 2_278_604 == parameter_count(PRESETS["1.0x"])
    assert PRESETS["1.0x"].arch_id == "7e67833bedee"


def test_the_largest_architecture_is_sized_without_building_it():
    size = model_size(HUGE, 224, 1000)
    assert size.params == parameter_count(HUGE) > 6 * 10**9
    # nothing is allocated: the estimate is plain integer arithmetic, whatever the size
    assert estimate_bytes(HUGE, input_size=4096, num_classes=ABSURD_CLASSES, batch=4096, training=True) > 10**15


# -- the estimate ---------------------------------------------------------------------------------
def test_estimate_grows_with_batch_input_classes_and_training():
    arch = PRESETS["1.0x"]
    base = estimate_bytes(arch, input_size=224, num_classes=1000)
    assert estimate_bytes(arch, input_size=224, num_classes=1000, batch=8) > base
    assert estimate_bytes(arch, input_size=448, num_classes=1000) > base
    assert estimate_bytes(arch, input_size=224, num_classes=100_000) > base
    assert estimate_bytes(arch, input_size=224, num_classes=1000, training=True, batch=8) > \
        estimate_bytes(arch, input_size=224, num_classes=1000, batch=8)
    weights = 4 * model_size(arch).params
    assert weights < base < 100 * weights  # the weights plus a little: 1.0x needs tens of MB


def test_format_bytes():
    assert format_bytes(0) == "0 bytes" and format_bytes(1023) == "1023 bytes"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(int(3.8 * 2**40)) == "3.8 TiB"
    assert format_bytes(10**5000).startswith("more than")  # any size prints, no float overflow


def test_available_memory_is_read():
    available = available_memory()
    assert available is None or available > 0


# -- refusals: one line, before allocating --------------------------------------------------------
def test_require_fits_names_what_it_would_need():
    require_fits(PRESETS["1.0x"], input_size=224, num_classes=1000, what="export")
    with pytest.raises(MemoryBudgetError) as err:
        require_fits(PRESETS["1.0x"], input_size=224, num_classes=ABSURD_CLASSES, what="export")
    message = str(err.value)
    assert "\n" not in message and isinstance(err.value, ShufflenasError)
    assert message.startswith(f"1.0x with {ABSURD_CLASSES} classes at 224x224 would need about ")
    assert "to export (weights " in message and "this machine has " in message and "available" in message
    assert "PiB" in message


def test_build_model_refuses_weights_that_cannot_fit():
    with pytest.raises(MemoryBudgetError, match="to build"):
        build_model(PRESETS["1.0x"], num_classes=ABSURD_CLASSES)
    with pytest.raises(MemoryBudgetError, match="stem24_w8192-8192-8192_d64-64-64"):
        build_model(HUGE, num_classes=ABSURD_CLASSES // 8)


def test_export_refuses_before_building():
    with pytest.raises(MemoryBudgetError, match="to export"):
        export_bytes(PRESETS["1.0x"], 224, ABSURD_CLASSES)
    with pytest.raises(MemoryBudgetError, match="100000x100000"):
        export_bytes(PRESETS["1.0x"], 100_000, 1000)


def test_export_refuses_more_than_one_onnx_file_holds():
    """Over 2 GiB of weights cannot be one protobuf: refused up front, not deep inside torch."""
    classes = ONNX_LIMIT_BYTES // (4 * 1024) + 1000  # 1.0x's classifier alone passes the limit
    fits = estimate_bytes(PRESETS["1.0x"], input_size=224, num_classes=classes) <= (available_memory() or 0)
    with pytest.raises(OnnxSizeError if fits else MemoryBudgetError) as err:
        check_exportable(PRESETS["1.0x"], 224, classes)
    if fits:
        assert "2 GiB" in str(err.value) and "protobuf" in str(err.value)
    check_exportable(PRESETS["2.0x"], 224, 1000)  # the presets stay far below it


def test_export_of_a_fitting_network_still_works():
    data = export_bytes(TINY, 16, 3)
    assert len(data) > 0


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", input_size=16, limit=120)


def test_proxy_training_refuses_what_cannot_be_trained(digits):
    many_classes = dataclasses.replace(digits, num_classes=ABSURD_CLASSES)
    with pytest.raises(MemoryBudgetError, match=r"to train \(weights .* x3 with gradients and momentum"):
        train_proxy(TINY.replace(conv5=1024), many_classes, ProxyConfig(epochs=1, batch_size=16))


def test_proxy_training_still_trains(digits):
    result = train_proxy(TINY, digits, ProxyConfig(epochs=1, batch_size=16, max_train_batches=2))
    assert result.status == "ok"
