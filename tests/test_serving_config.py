"""conf/deploy.yaml composes with the training config's backend group, and its values reach the server."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hydra import compose, initialize_config_dir

from dogbreed.config.errors import ConfigValueError
from dogbreed.serving.protocol import BoundedH11Protocol
from dogbreed.serving.server import check_model_dir, uvicorn_config
from dogbreed.serving.settings import (
    SECTIONS,
    ServerSettings,
    config_fields,
    endpoint_settings,
    listen_settings,
    settings_from_config,
)
from tests.conftest import CONF_DIR


def compose_deploy(overrides: list[str]):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose("deploy", overrides=overrides)


def test_deploy_defaults_serve_locally_on_127_0_0_1_8080():
    cfg = compose_deploy(["model_dir=some/model"])
    assert cfg.backend.name == "local"
    assert (cfg.server.host, cfg.server.port) == ("127.0.0.1", 8080)
    settings = settings_from_config(cfg)
    assert settings.max_batch_size == 16 and settings.limits.max_body_bytes == 6 * 2**20


def test_overrides_reach_the_server_settings():
    cfg = compose_deploy(
        [
            "model_dir=m",
            "server.max_batch_size=4",
            "server.max_wait_ms=2.5",
            "server.threads=1",
            "server.optimize=none",
            "limits.max_pixels=1000",
            "server.preprocess_workers=3",
            "limits.decode_timeout_s=1.5",
            "limits.decode_s_per_megapixel=0.5",
        ]
    )
    settings = settings_from_config(cfg)
    assert (settings.max_batch_size, settings.max_wait_ms, settings.threads) == (4, 2.5, 1)
    assert settings.optimize == "none" and settings.limits.max_pixels == 1000
    assert settings.preprocess_workers == 3
    assert settings.decode_budget.seconds(4_000_000) == 1.5 + 0.5 * 4


def test_uvicorn_counts_no_idle_connection_and_the_protocol_bounds_them():
    """uvicorn's limit_concurrency (which counts idle sockets) stays off; our protocol gets the bounds."""
    cfg = compose_deploy(["model_dir=m", "server.max_connections=300", "server.keep_alive_timeout_s=3"])
    config = uvicorn_config(object(), listen_settings(cfg))
    assert config.limit_concurrency is None and config.timeout_keep_alive == 3
    assert issubclass(config.http, BoundedH11Protocol)
    assert (config.http.max_connections, config.http.head_timeout_s) == (300, 10.0)


def test_a_folder_without_an_exported_model_is_refused_with_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"holds no model.json: .*model_dir=runs/train/<run>/model"):
        check_model_dir(tmp_path)


def test_every_server_and_limits_key_is_a_settings_field_with_the_same_default_and_back():
    """conf/deploy.yaml and the dataclasses of serving/settings.py hold the same keys and values: the
    dataclasses' defaults (what the SageMaker handler uses without its variables) are the config's."""
    cfg = compose_deploy(["model_dir=m"])
    for section, classes in SECTIONS.items():
        values = dict(cfg[section])
        found = {}
        for cls in classes:
            defaults = cls()
            found.update({name: getattr(defaults, name) for name in config_fields(cls)})
        assert set(values) == set(found), section
        assert values == found, section


def test_a_misspelt_or_mistyped_setting_names_its_key():
    with pytest.raises(ConfigValueError, match=r"server\.max_batch is not a setting"):
        settings_from_config(compose_deploy(["model_dir=m", "+server.max_batch=4"]))
    with pytest.raises(ConfigValueError, match=r"limits\.max_pixels='many' must be int"):
        settings_from_config(compose_deploy(["model_dir=m", "limits.max_pixels=many"]))


def test_the_endpoint_reads_the_same_settings_from_its_variables():
    cfg = compose_deploy(["model_dir=m", "server.default_topk=3", "limits.max_pixels=1000"])
    environment = {key: str(value) for key, value in cfg.endpoint.environment.items() if value is not None}
    local, endpoint = settings_from_config(cfg), endpoint_settings(environment)
    assert endpoint == replace(local, decode_budget=endpoint.decode_budget)  # decode budget: local only
    assert endpoint_settings({}) == ServerSettings()
    with pytest.raises(ConfigValueError, match="DOGBREED_TOPK='x' must be int"):
        endpoint_settings({"DOGBREED_TOPK": "x"})
