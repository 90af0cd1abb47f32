"""The servers' settings, in one home: these dataclasses and their defaults.

conf/deploy.yaml's `server:` and `limits:` sections hold the same keys with the same values (a test keeps
them equal, key for key and value for value): `server:` fills `ServerSettings` (what the app does) and
`ListenSettings` (how uvicorn listens), `limits:` fills `RequestLimits` (what a request may hold, both
servers) and `DecodeBudget` (how long a request may decode, local server). Each is built by the same
generic reader, so a key added to a dataclass is a key of the config, and the other way round. The
SageMaker handler reads the same fields from the model's environment (`ENDPOINT_VARIABLES`, DOGBREED_*),
and falls back on the same defaults.
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from functools import cache
from typing import Any, TypeVar

from dogbreed.config.errors import ConfigValueError
from dogbreed.serving.decoding import RequestLimits

T = TypeVar("T")


@dataclass(frozen=True)
class DecodeBudget:
    """Seconds a request may take in its worker: `decode_timeout_s` to read it and check its image headers,
    plus `decode_s_per_megapixel` for each megapixel decoding will produce. None: no deadline."""

    decode_timeout_s: float | None = 2.0
    decode_s_per_megapixel: float = 0.25

    def __post_init__(self) -> None:
        if self.decode_timeout_s is not None and self.decode_timeout_s <= 0:
            raise ConfigValueError(
                f"limits.decode_timeout_s={self.decode_timeout_s} must be positive (or null: no deadline)"
            )
        if self.decode_s_per_megapixel < 0:
            raise ConfigValueError(
                f"limits.decode_s_per_megapixel={self.decode_s_per_megapixel} must not be negative"
            )

    def seconds(self, decoded_pixels: int = 0) -> float | None:
        if self.decode_timeout_s is None:
            return None
        return self.decode_timeout_s + self.decode_s_per_megapixel * decoded_pixels / 1e6


@dataclass(frozen=True)
class ServerSettings:
    """What the app does; `limits` and `decode_budget` come from the `limits:` section."""

    max_batch_size: int = 16
    max_wait_ms: float = 5.0
    threads: int | None = None  # torch intra-op threads; None: one per available CPU
    # Processes parsing, decoding and resizing requests; None: half the CPUs, and at least 2, so that an
    # ordinary request finds a free worker while a slow one decodes.
    preprocess_workers: int | None = None
    device: str = "auto"
    # What runs the network: auto (the fastest ONNX runtime installed, on the model's optimised artifact,
    # else torch) | openvino | onnxruntime | torch. `optimize` applies to torch only.
    engine: str = "auto"
    optimize: str = "fuse"
    default_topk: int = 5
    # A client that stops sending its body is answered 408 and disconnected after this long.
    body_timeout_s: float = 30.0
    # Images admitted and not yet answered; beyond it, 503 with Retry-After at once. None: no bound.
    max_queue: int | None = 64
    retry_after_s: int = 1
    page: bool = True  # the page at / for people to try the model (serving/page.py)
    limits: RequestLimits = field(default_factory=RequestLimits)
    # The time a request may take in its worker, past which it is answered 413 and its worker replaced.
    decode_budget: DecodeBudget = field(default_factory=DecodeBudget)


@dataclass(frozen=True)
class ListenSettings:
    """How uvicorn listens (serving/server.py uvicorn_config)."""

    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "info"
    header_timeout_s: float = 10.0
    keep_alive_timeout_s: int = 5
    max_connections: int | None = 1024


# conf/deploy.yaml's sections -> the dataclasses their keys fill.
SECTIONS: dict[str, tuple[type, ...]] = {
    "server": (ServerSettings, ListenSettings),
    "limits": (RequestLimits, DecodeBudget),
}

# The SageMaker model's environment (conf/deploy.yaml endpoint.environment) -> ServerSettings' fields.
ENDPOINT_VARIABLES = {
    "DOGBREED_DEVICE": "device",
    "DOGBREED_ENGINE": "engine",
    "DOGBREED_OPTIMIZE": "optimize",
    "DOGBREED_TOPK": "default_topk",
    "DOGBREED_THREADS": "threads",
}
LIMIT_VARIABLE_PREFIX = "DOGBREED_"  # DOGBREED_MAX_PIXELS -> RequestLimits.max_pixels, and so on


@cache  # the handler reads its settings on every request
def config_fields(cls: type) -> dict[str, Any]:
    """A settings dataclass's keys in the config -> their types (nested settings are not keys)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls) if not is_dataclass(hints[f.name])}


def _typed(kind: Any, value: Any, where: str) -> Any:
    """`value` (from YAML or an environment variable) as `kind`: int, float, str, bool or `X | None`."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        if value is None or (isinstance(value, str) and value.lower() in ("", "null", "none")):
            return None
        (kind,) = [arg for arg in typing.get_args(kind) if arg is not type(None)]
    if kind is bool:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if isinstance(value, bool):
            return value
    else:
        try:
            return kind(value)
        except (TypeError, ValueError):
            pass
    raise ConfigValueError(f"{where}={value!r} must be {getattr(kind, '__name__', kind)}")


def settings_of(cls: type[T], values: Mapping[str, Any], where: Callable[[str], str]) -> T:
    """The dataclass `cls` from the keys of `values` that name its fields; the others keep their default.
    `where(key)` names the key for an error message (`server.port`, `DOGBREED_TOPK`)."""
    kinds = config_fields(typing.cast(type, cls))
    given = {key: _typed(kinds[key], value, where(key)) for key, value in values.items() if key in kinds}
    return cls(**given)


def _in_section(section: str) -> Callable[[str], str]:
    return lambda key: f"{section}.{key}"


def check_section(values: Mapping[str, Any], section: str) -> None:
    """Every key of the section names a field of its dataclasses: a misspelt key is refused, never ignored."""
    known = {name for cls in SECTIONS[section] for name in config_fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigValueError(f"{section}.{unknown[0]} is not a setting; known: {', '.join(sorted(known))}")


def settings_from_config(cfg: Any) -> ServerSettings:
    """ServerSettings from conf/deploy.yaml's `server:` and `limits:` (a DictConfig or a plain mapping)."""
    server, limits = dict(cfg["server"]), dict(cfg["limits"])
    check_section(server, "server")
    check_section(limits, "limits")
    return replace(
        settings_of(ServerSettings, server, _in_section("server")),
        limits=settings_of(RequestLimits, limits, _in_section("limits")),
        decode_budget=settings_of(DecodeBudget, limits, _in_section("limits")),
    )


def listen_settings(cfg: Any) -> ListenSettings:
    server = dict(cfg["server"])
    check_section(server, "server")
    return settings_of(ListenSettings, server, _in_section("server"))


def endpoint_settings(environ: Mapping[str, str] = os.environ) -> ServerSettings:
    """ServerSettings of the SageMaker handler, from the model's environment; unset variables keep the
    defaults above (the values of conf/deploy.yaml)."""
    variable_of = {name: var for var, name in ENDPOINT_VARIABLES.items()}
    variable_of.update({name: limit_variable(name) for name in config_fields(RequestLimits)})
    values = {name: environ[var] for name, var in variable_of.items() if environ.get(var)}
    return replace(
        settings_of(ServerSettings, values, variable_of.__getitem__),
        limits=settings_of(RequestLimits, values, variable_of.__getitem__),
    )


def limit_variable(name: str) -> str:
    """RequestLimits.max_pixels -> DOGBREED_MAX_PIXELS (a SageMaker model's environment)."""
    return LIMIT_VARIABLE_PREFIX + name.upper()
