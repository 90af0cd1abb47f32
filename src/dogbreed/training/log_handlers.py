"""Each log line once. Lightning's package logger (`lightning`) prints through a console handler of its
own and also passes each record on to the root logger; where the root logger has handlers too (Hydra's,
in train.py and tune.py: the console and the run's log file), every Lightning line came out twice, once in
each format. There, Lightning's own console handler goes and its lines take the root logger's format."""

from __future__ import annotations

import logging

# The loggers Lightning gives a console handler of their own at import (the unified package and the
# standalone ones).
LIGHTNING_LOGGERS = (
    "lightning",
    "lightning.pytorch",
    "lightning.fabric",
    "pytorch_lightning",
    "lightning_fabric",
)


def lightning_lines_once() -> None:
    """Remove Lightning's own console handlers when the root logger prints its records anyway."""
    if not logging.getLogger().handlers:
        return  # nobody else prints Lightning's lines: keep its handler
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if not logger.propagate:
            continue  # its records stop here: its own handler is the only one that prints them
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:  # a console handler, not a file or anything else
                logger.removeHandler(handler)
