"""The search-space file: every conf/search/*.yaml loads, bad entries fail naming the parameter."""

from __future__ import annotations

import re

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from dogbreed.config.overrides import format_override
from dogbreed.tuning.search_space import SearchSpaceError, load_search_space, search_space_to_optuna
from tests.conftest import CONF_DIR, compose_config


def test_default_space_covers_the_issue_parameters_with_log_scales():
    space = load_search_space(CONF_DIR / "search" / "default.yaml")
    dists = search_space_to_optuna(space)
    assert {"model.lr", "model.weight_decay", "model.eps", "data.batch_size", "trainer.max_epochs"} <= set(
        dists
    )
    assert isinstance(dists["model.lr"], FloatDistribution) and dists["model.lr"].log
    assert isinstance(dists["model.eps"], FloatDistribution) and dists["model.eps"].log
    assert isinstance(dists["data.batch_size"], CategoricalDistribution)
    assert isinstance(dists["trainer.max_epochs"], IntDistribution) and not dists["trainer.max_epochs"].log


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF_DIR / "search").glob("*.yaml")))
def test_every_search_file_composes_into_the_tune_config_and_names_real_keys(tmp_path, name):
    from dogbreed.tuning.study import check_keys_exist, train_config

    cfg = compose_config(tmp_path, [f"search={name}"], config_name="tune")
    space = load_search_space(cfg.search, source=f"search={name}")
    check_keys_exist(space, train_config(cfg), f"search={name}")
    assert search_space_to_optuna(space)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"type": "uniform", "low": 0, "high": 1},
            r"parameter model\.lr: unknown type 'uniform'.*float, int",
        ),
        (
            {"type": "float", "low": 0.1, "high": 0.01},
            r"parameter model\.lr: low=0\.1 is greater than high=0\.01",
        ),
        ({"type": "float", "low": 0.0, "high": 1.0, "log": True}, r"model\.lr: log scale needs low > 0"),
        ({"type": "categorical"}, r"model\.lr: type categorical needs a non-empty list of choices"),
        ({"type": "categorical", "choices": []}, r"model\.lr: type categorical needs a non-empty list"),
        ({"type": "float", "high": 1.0}, r"model\.lr: type float needs low"),
        ({"type": "float", "low": "1e-5", "high": 1.0}, r"model\.lr: low='1e-5' is not a number.*1\.0e-5"),
        ({"type": "int", "low": 1, "high": 2.5}, r"model\.lr: high=2\.5 is not an integer"),
        ({"type": "float", "low": 1, "high": 2, "choices": [1]}, r"model\.lr: unknown field\(s\) choices"),
        ("0.001", r"model\.lr: expected a mapping"),
    ],
)
def test_bad_entries_fail_with_a_message_naming_the_file_and_parameter(entry, message):
    with pytest.raises(SearchSpaceError, match=message) as info:
        load_search_space({"model.lr": entry}, source="conf/search/mine.yaml")
    assert str(info.value).startswith("conf/search/mine.yaml: parameter model.lr")


def test_a_yaml_file_with_an_error_is_named_in_the_message(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model.lr: {type: float, low: 1.0, high: 0.5}\n")
    with pytest.raises(
        SearchSpaceError, match=re.escape(str(path)) + r": parameter model\.lr: low=1\.0 is greater than high"
    ):
        load_search_space(path)


def test_unknown_config_key_is_refused_before_any_trial(tmp_path):
    from dogbreed.tuning.study import check_keys_exist, train_config

    cfg = compose_config(tmp_path, config_name="tune")
    space = load_search_space({"model.lrr": {"type": "float", "low": 0.1, "high": 1.0}})
    with pytest.raises(SearchSpaceError, match=r"model\.lrr not found in the train config"):
        check_keys_exist(space, train_config(cfg), "search")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3.1e-05, "k=3.1e-05"),
        (16, "k=16"),
        (True, "k=true"),
        (None, "k=null"),
        ("cosine", "k=cosine"),
        ("1e-3", "k='1e-3'"),
        ("a b", "k='a b'"),
    ],
)
def test_overrides_read_back_to_the_same_value(value, expected):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    text = format_override("k", value)
    assert text == expected
    (parsed,) = OverridesParser.create().parse_overrides([text])
    assert parsed.value() == value
