"""The one masking function (dogbreed.config.secrets) and the config as records hold it. Whole runs that
must leave no secret behind: test_security.py."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from omegaconf import OmegaConf

from dogbreed.config.secrets import MASK, config_for_records, looks_like_secret_key, mask_secrets
from tests.conftest import compose_config

MASKED = [
    (
        "postgresql://tuner:hunter2-SECRET@db.internal:5432/studies",
        "postgresql://tuner:***@db.internal:5432/studies",
    ),
    ("mysql+pymysql://u:p%40ss@h/db?charset=utf8", "mysql+pymysql://u:***@h/db?charset=utf8"),
    ("https://:token-only@host/x", "https://:***@host/x"),
    (
        "https://b.s3.amazonaws.com/d.zip?X-Amz-Credential=AKIA/2026/s3&X-Amz-Signature=abc&x=1",
        "https://b.s3.amazonaws.com/d.zip?X-Amz-Credential=***&X-Amz-Signature=***&x=1",
    ),
    (
        "sqlite:///file:/r/study.db?uri=true&password=hunter2",
        "sqlite:///file:/r/study.db?uri=true&password=***",
    ),
    ("+db.password=hunter2", "+db.password=***"),
    ("logger.mlflow.tags.api_key='a b c'", "logger.mlflow.tags.api_key=***"),
    ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "AWS_SECRET_ACCESS_KEY=***"),
    ("id AKIAIOSFODNN7EXAMPLE and ASIAIOSFODNN7EXAMPLE.", "id *** and ***."),
    ("session_token = abc123", "session_token = ***"),
]
UNCHANGED = [
    "tune.storage='${oc.env:DOGBREED_STUDY_DB}'",  # a reference is a name, not a secret
    "+db.password=${oc.env:DB_PASSWORD}",
    "postgresql://tuner:${oc.env:PW}@host/db",
    "postgresql://tuner@host/db",
    "http://host:5000/path@v2",  # a port, not a password
    "sqlite:////runs/tune/study.db",
    "model.lr=0.001 data.max_tokens=5 tokenizer=bpe bypass=1 passage=2",
    "3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a",  # a git commit: 40 characters, but no key names it
    "arn:aws:iam::123456789012:role/x",
]


@pytest.mark.parametrize(("text", "expected"), MASKED)
def test_credentials_in_text_are_masked(text, expected):
    assert mask_secrets(text) == expected


@pytest.mark.parametrize("text", UNCHANGED)
def test_text_without_credentials_is_left_as_it_is(text):
    assert mask_secrets(text) == text


def test_values_under_secret_named_keys_are_masked_in_nested_dicts_and_lists():
    record = {
        "tune": {"storage": "postgresql://t:pw@h/db", "n_trials": 3},
        "aws": {"AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "region": "eu-west-1"},
        "credentials": {"user": "u", "keys": ["k1", 7], "enabled": True, "none": None},
        "api_token": "${oc.env:TOKEN}",
        "overrides": ["db.password=pw", ("x=AKIAIOSFODNN7EXAMPLE",)],
        "logger/mlflow/tags/api_key": 12345,
    }
    assert mask_secrets(record) == {
        "tune": {"storage": "postgresql://t:***@h/db", "n_trials": 3},
        "aws": {"AWS_SECRET_ACCESS_KEY": MASK, "region": "eu-west-1"},
        "credentials": {"user": MASK, "keys": [MASK, MASK], "enabled": True, "none": None},
        "api_token": "${oc.env:TOKEN}",
        "overrides": ["db.password=***", ("x=***",)],
        "logger/mlflow/tags/api_key": MASK,
    }
    assert record["tune"]["storage"] == "postgresql://t:pw@h/db"  # the input is not changed


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("password", True),
        ("db.passwd", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("X-Amz-Security-Token", True),
        ("apiKey", True),
        ("api-key", True),
        ("client_secrets", True),
        ("tokenizer", False),
        ("max_tokens", False),
        ("passes", False),
        ("storage", False),
    ],
)
def test_which_keys_name_a_credential(key, secret):
    assert looks_like_secret_key(key) is secret


PASSWORDS = st.text(
    st.characters(blacklist_characters="@/?#", blacklist_categories=("Cs", "Z", "Cc")), min_size=1
)


@given(PASSWORDS.filter(lambda p: not p.startswith("${")))
def test_any_url_password_is_masked(password):
    assert mask_secrets(f"postgresql://tuner:{password}@db/studies") == "postgresql://tuner:***@db/studies"


@given(
    st.text(st.characters(blacklist_characters="&,;'\"", blacklist_categories=("Cs", "Z", "Cc")), min_size=1)
)
def test_any_value_of_a_secret_override_or_query_parameter_is_masked(value):
    if value.startswith("${"):
        return
    assert mask_secrets(f"+db.password={value}") == "+db.password=***"
    assert mask_secrets(f"https://h/x?a=1&token={value}&b=2") == "https://h/x?a=1&token=***&b=2"
    assert mask_secrets({"AWS_SECRET_ACCESS_KEY": value}) == {"AWS_SECRET_ACCESS_KEY": MASK}


@given(
    st.recursive(st.text() | st.integers() | st.none(), lambda c: st.lists(c) | st.dictionaries(st.text(), c))
)
def test_masking_twice_changes_nothing_more(value):
    once = mask_secrets(value)
    assert mask_secrets(once) == once


def test_records_keep_environment_references_and_resolve_the_rest(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_SECRET", "sk-fake-0123456789")
    monkeypatch.setenv("RUNS", str(tmp_path))
    cfg = compose_config(
        tmp_path,
        [
            "data.url='https://h/d.zip?k=${oc.env:FAKE_SECRET}'",
            "+probe.key=${oc.env:FAKE_SECRET}",
            "+probe.nested=${probe.key}-suffix",  # an interpolation of a reference shows the reference
            "+probe.mixed=${oc.env:RUNS}/${data.image_size}",
            "+probe.literal=https://fetch:hunter2-SECRET@data.example/x.zip",
        ],
    )
    assert cfg.probe.key == "sk-fake-0123456789"  # training sees the value
    recorded = config_for_records(cfg)
    assert recorded["data"]["url"] == "https://h/d.zip?k=${oc.env:FAKE_SECRET}"
    assert recorded["probe"] == {
        "key": "${oc.env:FAKE_SECRET}",
        "nested": "${oc.env:FAKE_SECRET}-suffix",
        "mixed": "${oc.env:RUNS}/${data.image_size}",
        "literal": "https://fetch:***@data.example/x.zip",
    }
    assert recorded["run_dir"] == str(tmp_path) and recorded["trainer"]["default_root_dir"] == str(tmp_path)
    assert recorded["data"]["arch"] == cfg.model.arch  # other interpolations are resolved
    text = OmegaConf.to_yaml(OmegaConf.create(recorded))
    assert "sk-fake" not in text and "hunter2" not in text
    # Written and read back (config.yaml), a reference resolves again in the reader's environment.
    assert OmegaConf.create(recorded).probe.key == "sk-fake-0123456789"
