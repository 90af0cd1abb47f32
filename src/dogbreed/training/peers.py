"""A distributed run whose peer is lost stops within a bound, saying which host and how it was lost.

Every wait on another process (a gradient all-reduce, a barrier, the rendezvous) is bounded by the process
group's timeout, `trainer.strategy.peer_timeout_s` (conf/trainer/ddp.yaml): gloo's transfers give up after it
even when the peer vanished without closing its connections (a lost instance), where the kernel alone would
keep retransmitting for a quarter of an hour. A peer whose process died (its host still up) resets the
connection at once. Either way the run ends with one line naming the host and what was seen, instead of
gloo's transport error: the host's name and address, and whether the host still answers (its training
process ended) or not (the instance is gone or its network is down).
"""

from __future__ import annotations

import errno
import os
import re
import socket
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import lightning.pytorch as pl
import torch.distributed as dist
from lightning.pytorch.strategies import DDPStrategy

# gloo names the peer of a failed transfer as "[address]:port" ("Read error [10.0.1.2]:4321: Connection
# reset by peer"); a transfer that timed out names none.
PEER_ADDRESS = re.compile(r"\[([0-9A-Fa-f.:]+)\]:\d+")
# How long the host of a silent peer is given to answer a connection attempt (a refusal is an answer).
PROBE_SECONDS = 5.0


class PeerLost(SystemExit):
    """A distributed run stopped because a peer was lost; `line` names it (printed, exit status 1)."""

    def __init__(self, line: str) -> None:
        super().__init__(1)
        self.line = line


class PeerTimedDDP(DDPStrategy):
    """Lightning's DDP with every wait on another process bounded by `peer_timeout_s`, and the host name of
    every rank gathered at setup, so a lost peer can be named."""

    def __init__(self, peer_timeout_s: float = 300.0, **kwargs: Any) -> None:
        super().__init__(timeout=timedelta(seconds=float(peer_timeout_s)), **kwargs)
        self.peer_timeout_s = float(peer_timeout_s)
        self.peer_hosts: list[str] = []  # host name of each global rank

    def setup(self, trainer: pl.Trainer) -> None:
        super().setup(trainer)
        hosts: list[Any] = [None] * self.world_size
        dist.all_gather_object(hosts, socket.gethostname())
        self.peer_hosts = [str(host) for host in hosts]

    def barrier(self, name: str | None = None) -> None:
        # While a lost peer's failure is being handled (last.ckpt saved on exception), nobody is left to
        # meet at a barrier: the save would fail on the closed connections instead of being written.
        handling = sys.exc_info()[1]
        if handling is not None and is_peer_failure(handling):
            return
        super().barrier(name)


def is_peer_failure(exc: BaseException | None) -> bool:
    """Whether `exc`, or the exception it was raised while handling, is a failed transfer with another
    process (gloo's transport, or torch's DistError)."""
    while exc is not None:
        if isinstance(exc, dist.DistError) or "gloo/transport" in str(exc):
            return True
        exc = exc.__context__
    return False


def host_answers(host: str, port: int, seconds: float = PROBE_SECONDS) -> bool:
    """Whether `host` answers a connection attempt: an accepted or refused connection both say it is up."""
    try:
        with socket.create_connection((host, port), timeout=seconds):
            return True
    except ConnectionRefusedError:
        return True
    except OSError as exc:  # a timeout, no route, the name unknown
        return exc.errno == errno.ECONNRESET


def address_of(host: str) -> str | None:
    try:
        return socket.gethostbyname(host)
    except OSError:
        return None


def lost_peer_line(
    exc: BaseException,
    hosts: Sequence[str],
    own_host: str,
    timeout_s: float,
    answers: Callable[[str], bool],
) -> str | None:
    """The line that says which peer host was lost and how, or None when `exc` is no peer failure.

    `hosts`: the host of each rank; `answers(host)`: whether the host still answers."""
    others = sorted(set(hosts) - {own_host})
    if not others or not is_peer_failure(exc):
        return None
    addresses = {host: address_of(host) for host in others}
    named = PEER_ADDRESS.search(str(exc))
    suspects = [h for h in others if named and addresses[h] == named.group(1)] or others
    silent = [h for h in suspects if not answers(h)]
    key = f"trainer.strategy.peer_timeout_s={timeout_s:g}"
    if silent:
        which = ", ".join(f"{h} ({addresses[h] or 'address unknown'})" for h in silent)
        return (
            f"ConnectionError: lost host {which}: it does not answer, the instance is gone or its network "
            f"is down; training stopped (a peer is waited for at most {key} s)"
        )
    if named:
        which = ", ".join(f"{h} ({addresses[h]})" for h in suspects)
        return (
            f"ConnectionError: lost host {which}: its training process ended (the host still answers; its "
            "own log says why); training stopped"
        )
    return (
        f"ConnectionError: no answer from the training processes of {', '.join(others)} within {key} s; "
        "their hosts still answer (a process is stuck, or slower than the timeout allows); training stopped"
    )


def peer_lost(exc: BaseException, trainer: pl.Trainer) -> PeerLost | None:
    """The exit for a run that `exc` ended because a peer was lost, else None."""
    strategy = trainer.strategy
    if not isinstance(strategy, PeerTimedDDP) or not strategy.peer_hosts:
        return None
    port = int(os.environ.get("MASTER_PORT", "29500"))
    line = lost_peer_line(
        exc,
        strategy.peer_hosts,
        strategy.peer_hosts[trainer.global_rank],
        strategy.peer_timeout_s,
        lambda host: host_answers(host, port),
    )
    return PeerLost(line) if line else None
