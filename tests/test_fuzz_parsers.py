"""Fuzzing the parsers users feed by hand: architecture strings/dicts/JSON and search configs.

Contract: a parser returns a value or raises a ``ShufflenasError`` (one-line message); any other
exception is a bug that would reach the user as a traceback.
"""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments.config import SearchConfig, load_configs
from search_space import Architecture, resolve_arch
from search_space.errors import ShufflenasError

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- architecture strings ---------------------------------------------------------------------------
NUMBER = st.one_of(st.integers(-5, 3000).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                   st.sampled_from(["", "0", "-0", "1e3", "0x10", "٣", "１", "nan", "inf", "1_0", " 4", "4 "]))
PART = st.builds(lambda prefix, nums, sep: prefix + sep.join(nums),
                 st.sampled_from(["stem", "w", "d", "r", "k", "c", "se", "dw", "x", ""]),
                 st.lists(NUMBER, min_size=0, max_size=4), st.sampled_from(["-", ",", "", "--"]))
ARCH_TEXT = st.one_of(
    st.builds("_".join, st.lists(PART, min_size=0, max_size=9)),
    st.text(alphabet=string.printable + "²٣ｗ\x00", max_size=80),
    st.sampled_from(["0.5x", "1.0x", "2.0x-se", "1.0x*", "/", ".", "..", "/dev/null", "/proc/self/status"]),
)


def _arch_or_error(call, *args):
    try:
        value = call(*args)
    except ShufflenasError as exc:
        assert str(exc).strip(), "an error needs a message"
        return None
    assert isinstance(value, Architecture)
    assert Architecture.from_string(value.to_string()) == value  # anything accepted round-trips
    return value


@FUZZ
@given(ARCH_TEXT)
def test_architecture_strings(text):
    _arch_or_error(Architecture.from_string, text)


@FUZZ
@given(ARCH_TEXT)
def test_resolve_arch_texts(text):
    _arch_or_error(resolve_arch, text)


JSON_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True),
                        st.text(max_size=8))
JSON_VALUE = st.recursive(JSON_SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                               st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                          max_leaves=12)
ARCH_KEYS = ["widths", "depths", "split_ratios", "stem", "conv5", "kernels", "se", "extra_dw", "name", "width"]
ARCH_DICT = st.dictionaries(st.sampled_from(ARCH_KEYS), st.one_of(
    JSON_VALUE, st.lists(st.integers(-3, 600), min_size=0, max_size=4),
    st.lists(st.floats(-1, 2), min_size=3, max_size=3)), max_size=8)


@FUZZ
@given(ARCH_DICT)
def test_architecture_dicts(data):
    _arch_or_error(Architecture.from_dict, data)
    _arch_or_error(Architecture.from_json, json.dumps(data))


@FUZZ
@given(st.one_of(st.text(max_size=60), JSON_VALUE.map(json.dumps)))
def test_architecture_json_text(text):
    _arch_or_error(Architecture.from_json, text)


LONG_NUMBER = st.builds(lambda sign, digits, tail: sign + digits + tail, st.sampled_from(["", "-"]),
                        st.integers(1, 6000).map(lambda n: "1" + "0" * (n - 1)),
                        st.sampled_from(["", ".0", "e3", ".5"]))
FIELD_TEXT = st.sampled_from(["116", "116.0", "true", "null", '"116"'])


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(ARCH_KEYS[:8]), st.one_of(
    LONG_NUMBER, FIELD_TEXT, st.lists(st.one_of(LONG_NUMBER, FIELD_TEXT), min_size=3, max_size=3).map(
        lambda items: "[" + ", ".join(items) + "]"))), max_size=6))
def test_architecture_json_numbers_and_keys(pairs):
    """Any digit count, floats where integers belong, keys given twice: a value or one short line."""
    text = "{" + ", ".join(f'"{key}": {value}' for key, value in pairs) + "}"
    try:
        arch = Architecture.from_json(text)
    except ShufflenasError as exc:
        assert str(exc).strip() and "\n" not in str(exc) and len(str(exc)) < 300
        return
    assert Architecture.from_string(arch.to_string()) == arch
    assert len({key for key, _ in pairs}) == len(pairs)  # accepted only without duplicate keys


# -- search configs ---------------------------------------------------------------------------------
TOP_KEYS = list(SearchConfig.__dataclass_fields__) + ["run", "trails", "flops_vs_speed", "x"]
SUB_KEYS = ["dataset", "data_root", "input_size", "epochs", "lr", "batch_size", "measure_budget_s", "estimate_model",
            "record_estimates", "isolate", "local-cpu", "mac", "width_ranges", "name", "bogus"]
TOML_SCALAR = st.one_of(st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                        st.text(alphabet=string.ascii_letters + string.digits + "-_:. ", max_size=12))
TOML_VALUE = st.one_of(TOML_SCALAR, st.lists(TOML_SCALAR, max_size=3),
                       st.dictionaries(st.sampled_from(SUB_KEYS), TOML_SCALAR, max_size=3),
                       st.lists(st.dictionaries(st.sampled_from(TOP_KEYS), TOML_SCALAR, max_size=3), max_size=2))
CONFIG_DICT = st.dictionaries(st.sampled_from(TOP_KEYS), TOML_VALUE, max_size=6)


def _config_or_error(path=None, overrides=None):
    try:
        configs = load_configs(path, overrides)
    except ShufflenasError as exc:
        assert str(exc).strip()
        return
    assert configs and all(isinstance(c, SearchConfig) for c in configs)


@FUZZ
@given(CONFIG_DICT)
def test_config_overrides(table):
    _config_or_error(None, table)


def _toml_literal(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_literal(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml_literal(v)}" for k, v in value.items()) + "}"


TOML_LINE = st.one_of(
    st.builds(lambda k, v: f"{k} = {_toml_literal(v)}", st.sampled_from(TOP_KEYS + SUB_KEYS), TOML_VALUE),
    st.sampled_from(["[proxy]", "[latency]", "[budgets]", "[space]", "[[run]]", "[run]", "[proxy", "= 3", "x =",
                     "trials = 3 4", '"a" = "b"', "[targets.x]", "", "# comment", "[flops_vs_speed]"]),
    st.text(max_size=20),
)


@FUZZ
@given(st.lists(TOML_LINE, max_size=10), st.binary(max_size=8))
def test_config_files(lines, junk):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.toml"
        path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass") + junk)
        _config_or_error(path)


@pytest.mark.parametrize("text", ["trials = 1e400", "trials = 99999999999999999999999", "seed = -1",
                                  "[proxy]\nepochs = 1e9", "targets = []", "objectives = []", "study = '\x00'"])
def test_config_edge_values(tmp_path, text):
    path = tmp_path / "edge.toml"
    path.write_text(text)
    _config_or_error(path)
