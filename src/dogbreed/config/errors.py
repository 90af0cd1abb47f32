"""User errors: a mistake the user can fix gets one `error:` line and exit status 2, never a traceback.

A user error is a bad config value, a missing or malformed data folder, weights that cannot be fetched, a
model directory that is not one, or an optional extra that is not installed. Its message names the key or
file at fault and the fix. Anything else is a fault of the program and keeps its traceback; so does a user
error when HYDRA_FULL_ERROR=1 is set (the switch Hydra itself reads for full tracebacks).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from dogbreed.config.extras import MODULE_EXTRAS
from dogbreed.config.secrets import mask_secrets

EXIT_USER_ERROR = 2  # what argparse and Hydra use for a bad command line

F = TypeVar("F", bound=Callable[..., Any])


class UserError(Exception):
    """A mistake the user can fix; the message names the config key or file, and the fix.

    Every fixable error of the library subclasses it (keeping its other base, e.g. ValueError, for callers
    that catch that), so telling a user error from a program fault is one isinstance check.
    """


class ConfigValueError(UserError, ValueError):
    """A config value of the wrong type or outside what the key allows."""


class MissingExtraError(UserError, RuntimeError):
    """A configured feature needs an optional package that is not installed; the message says which extra."""


def _causes(exc: BaseException):
    """`exc` and what it was raised from: hydra.utils.instantiate wraps a constructor's error in its own."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__


def one_line(message: str) -> str:
    """A message's lines joined into one: 'folder x is not usable: missing a; empty b'."""
    lines = [line.strip().removeprefix("- ").strip() for line in message.splitlines() if line.strip()]
    if not lines:
        return ""
    head, rest = lines[0], lines[1:]
    if not rest:
        return head
    return head + (" " if head.endswith(":") else "; ") + "; ".join(rest)


def user_error_message(exc: BaseException) -> str | None:
    """The one-line message for a user error somewhere in `exc`'s chain; None for a program fault."""
    for error in _causes(exc):
        if isinstance(error, UserError):
            return one_line(str(error))
        if isinstance(error, ModuleNotFoundError) and error.name:
            top = error.name.split(".")[0]
            if top in MODULE_EXTRAS:
                extra = MODULE_EXTRAS[top]
                return f"{top} is not installed: pip install -e '.[{extra}]' (the {extra} extra)"
    return None


def exit_on_user_error(main: F) -> F:
    """Decorate an entry point's main (under @hydra.main): user errors become `error: ...` and exit 2."""

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except Exception as exc:
            message = user_error_message(exc)
            if message is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"error: {mask_secrets(message)}", file=sys.stderr, flush=True)
            raise SystemExit(EXIT_USER_ERROR) from None

    return wrapper  # type: ignore[return-value]
