"""Nothing a run writes or prints holds a secret: the one masking function, and a config as records hold it.

`mask_secrets(value)` (a string, or dicts and lists of them) hides what looks like a credential:

    mask_secrets("postgresql://tuner:pw@db/studies")     -> "postgresql://tuner:***@db/studies"
    mask_secrets("https://h/x.zip?X-Amz-Signature=abc")  -> "https://h/x.zip?X-Amz-Signature=***"
    mask_secrets("key AKIAIOSFODNN7EXAMPLE")             -> "key ***"
    mask_secrets({"db": {"password": "pw"}})             -> {"db": {"password": "***"}}

`config_for_records(cfg)` is a run's config as every writer records it (config.yaml, MLflow params, the
model card): interpolations resolved, except those that read the environment (`${oc.env:NAME}`), which
stay as written, so a value that came from a variable is never written out; then masked.

A reference such as `${oc.env:DB_PASSWORD}` is a name, not a secret: it is left as typed everywhere.
"""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omegaconf import DictConfig

MASK = "***"

# A word that names a credential, standing alone in a key (db.password, AWS_SECRET_ACCESS_KEY, api-key,
# X-Amz-Signature), not inside a longer word (tokenizer, bypass).
_SECRET_WORD = (
    r"(?<![a-z])(?:pass(?:word|wd|phrase)?|secrets?|token|credentials?|api[_-]?key|private[_-]?key"
    r"|signature|auth[_-]?key)(?![a-z])"
)
SECRET_KEY = re.compile(_SECRET_WORD, re.IGNORECASE)
# A URL's user:password@ (the password never starts an interpolation: `${oc.env:PW}` is a name).
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s:/?#@]*:)(?!\$\{)[^\s/?#@]+(?=@)", re.IGNORECASE)
# key=value inside a string: a query parameter, a Hydra override, an environment assignment.
_KEY_VALUE = re.compile(
    rf"((?:[\w.~+-]*?){_SECRET_WORD}[\w.-]*\s*=\s*)(?!['\"]?\$\{{)('[^']*'|\"[^\"]*\"|[^\s&,;'\"]+)",
    re.IGNORECASE,
)
# AWS access key ids (long-term AKIA, temporary ASIA).
_AWS_KEY_ID = re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])")
# An interpolation that reads the environment: oc.env, and the env resolver of old OmegaConf versions.
ENV_REFERENCE = re.compile(r"\$\{\s*(?:oc\.env|env)\s*:")
_INTERPOLATION = re.compile(r"\s*\$\{.*\}\s*", re.DOTALL)


def looks_like_secret_key(key: object) -> bool:
    """A mapping key (or flattened key such as `logger/mlflow/tags/api_token`) that names a credential."""
    return isinstance(key, str) and SECRET_KEY.search(key) is not None


def mask_text(text: str) -> str:
    """`text` with URL passwords, secret-named key=value pairs and AWS key ids replaced by ***."""
    text = _URL_PASSWORD.sub(lambda m: m.group(1) + MASK, text)
    text = _KEY_VALUE.sub(lambda m: m.group(1) + MASK, text)
    return _AWS_KEY_ID.sub(MASK, text)


def _hidden(value: Any) -> Any:
    """A value under a secret-named key: every leaf masked, but for null, booleans and references."""
    if isinstance(value, dict):
        return {key: _hidden(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_hidden(item) for item in value)
    if value is None or isinstance(value, bool) or value == "":
        return value
    if isinstance(value, str) and _INTERPOLATION.fullmatch(value):
        return value
    return MASK


def mask_secrets(value: Any) -> Any:
    """`value` with what looks like a credential replaced by ***: in strings (see `mask_text`), and in dicts
    every value under a secret-named key. Lists, tuples and dicts are copied; other values pass as they are.
    Masking twice changes nothing more."""
    if isinstance(value, str):
        return mask_text(value)
    # omegaconf only when it is already loaded: a config object cannot exist otherwise, and SageMaker's
    # inference container, where this module ships in model.tar.gz's code/, has no omegaconf.
    omegaconf = sys.modules.get("omegaconf")
    if omegaconf is not None and isinstance(value, omegaconf.DictConfig | omegaconf.ListConfig):
        value = omegaconf.OmegaConf.to_container(value, resolve=False)
    if isinstance(value, dict):
        return {
            key: _hidden(item) if looks_like_secret_key(key) else mask_secrets(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(mask_secrets(item) for item in value)
    return value


_PLACEHOLDER = "@@dogbreed-environment-reference-{}@@"


def config_for_records(cfg: DictConfig) -> dict[str, Any]:
    """The whole config resolved, but for environment references, kept as written, then masked.

    A value that interpolates an environment reference (`model_dir: ${run_dir}/model` with
    `run_dir: ${oc.env:RUNS}`) shows the reference too: `${oc.env:RUNS}/model`.
    """
    from omegaconf import OmegaConf

    raw = OmegaConf.to_container(cfg, resolve=False)
    references: dict[str, str] = {}

    def hold(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: hold(item) for key, item in node.items()}
        if isinstance(node, list):
            return [hold(item) for item in node]
        if isinstance(node, str) and ENV_REFERENCE.search(node):
            placeholder = _PLACEHOLDER.format(len(references))
            references[placeholder] = node
            return placeholder
        return node

    def restore(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: restore(item) for key, item in node.items()}
        if isinstance(node, list):
            return [restore(item) for item in node]
        if isinstance(node, str) and "@@dogbreed-environment-reference-" in node:
            for placeholder, text in references.items():
                node = node.replace(placeholder, text)
        return node

    held = OmegaConf.create(hold(raw))
    resolved = OmegaConf.to_container(held, resolve=True)
    return mask_secrets(restore(resolved))
