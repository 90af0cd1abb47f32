"""A command line Hydra cannot compose (a mistyped key, an unknown option) is one `error:` line and exit 2.

Hydra reports these itself, before an entry point's main runs: a multi-line block and exit status 1
(hydra._internal.utils.run_and_report), out of reach of exit_on_user_error. So the entry points compose the
command line once with Hydra's compose API before handing it to @hydra.main, and turn the composition error
into one line: `unknown key model.lrr (did you mean model.lr?)`, `unknown option model=resnet99 (choose
resnet18 or resnet50)`. HYDRA_FULL_ERROR=1 skips the check, so Hydra's own full trace stays one switch away.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from dogbreed.config.errors import EXIT_USER_ERROR, one_line
from dogbreed.config.secrets import mask_secrets


def _overrides(argv: Sequence[str]) -> list[str] | None:
    """The overrides of a plain run's command line; None where Hydra's own flags (--multirun, --cfg,
    --help, -cn ...) are in play, which only Hydra itself reads."""
    return None if any(arg.startswith("-") for arg in argv) else list(argv)


def _unknown_key_message(exc: BaseException) -> str | None:
    """'unknown key model.lrr (did you mean model.lr?)' for an override of a key the config lacks."""
    from omegaconf.errors import OmegaConfBaseException

    cause = exc.__cause__  # ConfigAttributeError or ConfigKeyError, both carry the node they missed in
    if not isinstance(cause, OmegaConfBaseException) or not cause.full_key:
        return None
    full_key = str(cause.full_key)
    parent, _, key = full_key.rpartition(".")
    siblings = [str(name) for name in (cause.parent_node or {}).keys() if name != "hydra"]
    close = difflib.get_close_matches(key, siblings, n=3)
    prefix = f"{parent}." if parent else ""
    hint = " or ".join(prefix + name for name in close)
    return f"unknown key {full_key}" + (f" (did you mean {hint}?)" if hint else "")


def composition_error_message(exc: BaseException, argv: Sequence[str]) -> str:
    """The one-line message for a command line Hydra could not compose."""
    from hydra.errors import MissingConfigException

    if isinstance(exc, MissingConfigException) and exc.options is not None:
        group = str(exc.missing_cfg_file).rpartition("/")[0]
        typed = next((arg for arg in argv if arg.lstrip("+~").partition("=")[0] == group), group)
        return f"unknown option {typed.lstrip('+~')} (choose one of: {', '.join(sorted(exc.options))})"
    unknown_key = _unknown_key_message(exc)
    if unknown_key:
        return unknown_key
    return one_line(str(exc).split("\nSee https://hydra.cc", 1)[0])


def exit_on_composition_error(config_dir: Path, config_name: str, argv: Sequence[str]) -> None:
    """Compose `argv` as @hydra.main will; a composition error prints one `error:` line and exits 2."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        return
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    try:
        overrides = _overrides(argv)
        if overrides is None:
            return
        with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base="1.3"):
            compose(config_name, overrides=overrides, return_hydra_config=True)
    except HydraException as exc:
        message = composition_error_message(exc, argv)
        print(f"error: {mask_secrets(message)}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_USER_ERROR) from None
