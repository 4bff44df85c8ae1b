"""SearchSpace: bounds, sampling, Optuna define-by-run suggestion and config parsing."""

from __future__ import annotations

import random

import optuna
import pytest

from search_space import (
    DEFAULT_SPACE,
    PAPER_PRESETS,
    PRESETS,
    Architecture,
    ArchitectureError,
    SearchSpace,
    presets_in,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: A space small enough to enumerate: 1 * 1 * 2 widths, 1 * 2 * 1 depths -> 4 architectures.
TINY = SearchSpace(width_ranges=((24, 24), (48, 48), (96, 100)), depth_ranges=((1, 1), (1, 2), (1, 1)),
                   split_ratios=(0.5,), stem_choices=(24,), conv5_choices=(512,))

#: Every kind of field varies, including kernels and the SE / extra-depthwise variants.
WIDE = SearchSpace(kernel_choices=(3, 5, 7), se_choices=(False, True), extra_dw_choices=(False, True))


@pytest.mark.parametrize("name", list(PAPER_PRESETS))
def test_paper_presets_lie_in_the_default_space(name):
    arch = PAPER_PRESETS[name]
    assert DEFAULT_SPACE.contains(arch)
    assert DEFAULT_SPACE.violations(arch) == []
    DEFAULT_SPACE.check(arch)


def test_presets_in():
    assert presets_in(DEFAULT_SPACE) == PAPER_PRESETS
    assert presets_in(DEFAULT_SPACE, ["1.0x", "2.0x-se", "nope"]) == {"1.0x": PAPER_PRESETS["1.0x"]}
    narrow = SearchSpace(conv5_choices=(1024,))
    assert list(presets_in(narrow)) == ["0.5x", "1.0x", "1.5x"]


def test_variants_outside_default_space_say_why():
    problems = DEFAULT_SPACE.violations(PRESETS["2.0x-se"])
    assert problems == ["se True not in (False,)"]
    with pytest.raises(ArchitectureError, match="outside the search space: se True not in"):
        DEFAULT_SPACE.check(PRESETS["2.0x-se"])
    assert WIDE.contains(PRESETS["2.0x-se"]) and WIDE.contains(PRESETS["1.0x*"])


def test_violations_name_each_field():
    arch = Architecture(widths=(22, 48, 2048), depths=(7, 8, 4), split_ratios=(0.5, 0.3, 0.5), stem=8,
                        kernels=(3, 3, 5))
    text = "; ".join(DEFAULT_SPACE.violations(arch))
    for fragment in ("stage2 width 22", "stage4 width 2048", "stage2 depth 7 outside 1..6", "stage3 split ratio 0.3",
                     "stage4 kernel 5", "stem 8"):
        assert fragment in text


def test_sample_many_is_deterministic_for_a_seed():
    first = DEFAULT_SPACE.sample_many(20, seed=7)
    assert first == DEFAULT_SPACE.sample_many(20, seed=7)
    assert [a.to_string() for a in first] == [a.to_string() for a in DEFAULT_SPACE.sample_many(20, seed=7)]
    assert first != DEFAULT_SPACE.sample_many(20, seed=8)
    assert len(set(first)) == 20
    assert all(DEFAULT_SPACE.contains(a) for a in first)
    # the same stream as sampling one by one from random.Random(seed)
    rng = random.Random(7)
    assert first[:3] == [DEFAULT_SPACE.sample(rng) for _ in range(3)]
    assert DEFAULT_SPACE.sample(3) == DEFAULT_SPACE.sample(random.Random(3))


def test_sample_many_stops_at_the_size_of_the_space():
    assert TINY.size() == 4
    everything = TINY.sample_many(10, seed=0)
    assert len(everything) == 4 and len(set(everything)) == 4
    assert len(TINY.sample_many(10, seed=0, unique=False)) == 10
    assert TINY.sample_many(0) == []


def test_wide_space_samples_every_variant():
    archs = WIDE.sample_many(60, seed=0)
    assert all(WIDE.contains(a) for a in archs)
    assert {a.se for a in archs} == {False, True}
    assert {a.extra_dw for a in archs} == {False, True}
    assert {k for a in archs for k in a.kernels} == {3, 5, 7}
    assert {a.stem for a in archs} == set(WIDE.stem_choices)
    assert {w % WIDE.width_divisor for a in archs for w in a.widths} == {0}


def test_size_of_default_space():
    widths = [len(range(24, 257, 4)), len(range(48, 513, 4)), len(range(96, 1025, 4))]
    depths = [6, 9, 6]
    expected = 3 * 5
    for w, d in zip(widths, depths):
        expected *= w * d * 5
    assert DEFAULT_SPACE.size() == expected


# -- Optuna ------------------------------------------------------------------------------------

def test_suggest_with_a_real_trial():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(5):
        trial = study.ask()
        arch = WIDE.suggest(trial)
        assert isinstance(arch, Architecture) and WIDE.contains(arch)
        # the trial's parameters are exactly the ones params_of would enqueue
        assert trial.params == WIDE.params_of(arch)
        study.tell(trial, 0.0)
        seen.add(arch)
    assert len(seen) == 5
    assert set(study.trials[0].params) == {"w2", "w3", "w4", "d2", "d3", "d4", "r2", "r3", "r4", "k2", "k3", "k4",
                                           "stem", "conv5", "se", "extra_dw"}


@pytest.mark.parametrize("name", list(PAPER_PRESETS))
def test_enqueued_preset_comes_back_exactly(name):
    preset = PAPER_PRESETS[name]
    study = optuna.create_study()
    study.enqueue_trial(DEFAULT_SPACE.params_of(preset))
    trial = study.ask()
    arch = DEFAULT_SPACE.suggest(trial)
    assert arch == preset and arch.arch_id == preset.arch_id


def test_enqueue_variant_in_wide_space():
    study = optuna.create_study()
    study.enqueue_trial(WIDE.params_of(PRESETS["2.0x-se"]))
    assert WIDE.suggest(study.ask()) == PRESETS["2.0x-se"]


def test_params_of_rejects_architectures_outside_the_space():
    with pytest.raises(ArchitectureError, match="outside the search space"):
        DEFAULT_SPACE.params_of(PRESETS["1.0x*"])


# -- from_dict ---------------------------------------------------------------------------------

def test_from_dict_builds_equal_space():
    table = {"width_ranges": [[24, 256], [48, 512], [96, 1024]], "width_divisor": 4,
             "depth_ranges": [[1, 6], [2, 10], [1, 6]], "split_ratios": [0.25, 0.375, 0.5, 0.625, 0.75],
             "stem_choices": [16, 24, 32], "conv5_choices": [512, 768, 1024, 1536, 2048], "kernel_choices": [3],
             "se_choices": [False], "extra_dw_choices": [False]}
    assert SearchSpace.from_dict(table) == DEFAULT_SPACE
    assert SearchSpace.from_dict({}) == DEFAULT_SPACE
    wide = SearchSpace.from_dict({"kernel_choices": [3, 5, 7], "se_choices": [False, True],
                                  "extra_dw_choices": [False, True]})
    assert wide == WIDE


@pytest.mark.parametrize("table, message", [
    ({"width_range": [[24, 256]] * 3}, "unknown search-space option(s): width_range"),
    ({"zz": 1, "aa": 2, "kernel_choices": [3]}, "unknown search-space option(s): aa, zz"),
    ({"width_ranges": [[24, 256, 1]] * 3}, "'width_ranges' has the wrong type"),
    ({"width_divisor": "four"}, "'width_divisor' has the wrong type"),
    ({"width_divisor": 3}, "width_divisor must be an even number"),
    ({"width_ranges": [[256, 24], [48, 512], [96, 1024]]}, "width_ranges must be three [low, high] pairs"),
    ({"depth_ranges": [[1, 6], [2, 10]]}, "depth_ranges must be three [low, high] pairs"),
    ({"width_ranges": [[25, 27], [48, 512], [96, 1024]]}, "no multiple of 4 in width range 25..27"),
    ({"width_ranges": [[24, 256], [48, 512], [96, 9000]]}, "width_ranges must stay within"),
    ({"depth_ranges": [[1, 6], [2, 100], [1, 6]]}, "depth_ranges must stay within"),
    ({"split_ratios": []}, "split_ratios must not be empty"),
    ({"split_ratios": "0.5"}, "split_ratios must be numbers in (0, 1)"),
    ({"split_ratios": [0.5, 1.0]}, "split_ratios must be numbers in (0, 1)"),
    ({"kernel_choices": [3, 4]}, "kernel_choices must be among (3, 5, 7), got 4"),
    ({"stem_choices": [24, 0]}, "stem_choices must be integers"),
    ({"conv5_choices": [1024.5]}, "conv5_choices must be integers"),
    ({"se_choices": [0, 1]}, "se_choices must be true/false values"),
    ([1, 2], "must be a table of options"),
])
def test_from_dict_rejects_bad_tables(table, message):
    with pytest.raises(ArchitectureError) as info:
        SearchSpace.from_dict(table)
    assert message in str(info.value)


# -- unit types per stage -------------------------------------------------------------------------

#: The shipped mixed recipe's space: ShuffleNetV2, ShuffleNetV1 (3 groups) and MobileNetV2 (t = 6) units.
MIXED = SearchSpace(width_ranges=((48, 240), (252, 480), (492, 960)), width_divisor=12, stem_choices=(24,),
                    conv5_choices=(0, 512, 1024), block_choices=("v2", "v1g3", "mb6"))


def test_default_space_asks_for_no_block_and_samples_as_before():
    assert DEFAULT_SPACE.block_choices == ("v2",) and not DEFAULT_SPACE.mixed
    arch = DEFAULT_SPACE.sample(3)
    assert arch.blocks == ("v2",) * 3 and "b2" not in DEFAULT_SPACE.params_of(arch)


def test_mixed_space_suggests_a_block_per_stage_and_a_ratio_only_where_it_splits():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    blocks = set()
    for _ in range(40):
        trial = study.ask()
        arch = MIXED.suggest(trial)  # every draw is a valid architecture: the space was checked when made
        study.tell(trial, 0.0)
        assert MIXED.contains(arch) and trial.params == MIXED.params_of(arch)
        for i, stage in enumerate((2, 3, 4)):
            assert trial.params[f"b{stage}"] == arch.blocks[i]
            assert (f"r{stage}" in trial.params) == (arch.blocks[i] == "v2")
            if arch.blocks[i] != "v2":
                assert arch.split_ratios[i] == 0.5
        blocks.update(arch.blocks)
    assert blocks == {"v2", "v1g3", "mb6"}


def test_mixed_space_samples_valid_architectures_and_enqueues_a_shufflenet_v1():
    archs = MIXED.sample_many(100, seed=0)
    assert len(archs) == 100 and all(MIXED.contains(a) for a in archs)
    assert {b for a in archs for b in a.blocks} == {"v2", "v1g3", "mb6"}
    v1 = Architecture(widths=(240, 480, 960), depths=(4, 8, 4), blocks=("v1g3",) * 3, conv5=0)
    study = optuna.create_study()
    study.enqueue_trial(MIXED.params_of(v1))
    assert MIXED.suggest(study.ask()) == v1
    assert "stage2 block mb6 not in ('v2',)" in DEFAULT_SPACE.violations(v1.replace(blocks=("mb6",) * 3, conv5=1024))


def test_mixed_space_size_counts_ratios_only_for_splitting_units():
    one = SearchSpace(width_ranges=((48, 48), (96, 96), (192, 192)), depth_ranges=((1, 1),) * 3, stem_choices=(24,),
                      conv5_choices=(512,), split_ratios=(0.25, 0.5), block_choices=("v2", "mb6"))
    assert one.size() == (2 + 1) ** 3
    assert len(set(one.sample_many(200, seed=0))) == one.size()


def test_mixed_space_from_a_config_table():
    table = {"block_choices": ["v2", "v1g3", "mb6"], "width_divisor": 12, "stem_choices": [24],
             "width_ranges": [[48, 240], [252, 480], [492, 960]], "conv5_choices": [0, 512, 1024]}
    assert SearchSpace.from_dict(table) == MIXED


@pytest.mark.parametrize("table, message", [
    ({"block_choices": ["v2", "zz"]}, "block_choices: unknown block type 'zz'"),
    ({"block_choices": ["v2", "v1g5"]}, "block_choices: block token 'v1g5'"),
    ({"block_choices": "v2"}, "'block_choices' has the wrong type"),
    ({"block_choices": []}, "block_choices must not be empty"),
    ({"block_choices": ["v2", "v2"]}, "names a unit type twice"),
    # the default widths (multiples of 4 after a 16-channel stem) do not split into 3 groups
    ({"block_choices": ["v2", "v1g3"]}, "stage2 can draw a v1g3 unit of width 24 after 16 channels"),
    ({"block_choices": ["v2", "mb6"], "extra_dw_choices": [False, True]}, "no extra-depthwise"),
])
def test_mixed_spaces_that_could_draw_an_invalid_unit_are_refused_up_front(table, message):
    with pytest.raises(ArchitectureError) as info:
        SearchSpace.from_dict(table)
    assert message in str(info.value) and "\n" not in str(info.value)
