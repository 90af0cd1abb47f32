"""How much of the time the training job itself is blocked on I/O, read from its threads' kernel states.

SageMaker's IOBottleneck compares the instance's CPU iowait with `io_threshold`. The kernel counts iowait
only on CPUs that are idle while a task waits for I/O, so any other work on the machine hides it, and one
blocked loader can never show more than 1/cores of it (on 2 cores: 50%, never above the default 50). The
kernel documentation calls the number unreliable (Documentation/filesystems/proc.rst, "iowait"). On a
dedicated SageMaker instance it stands for the job's own waiting; locally the job is measured directly: this
process and its children (data loader workers). A thread of theirs in uninterruptible sleep (state D, what
ps and top show as waiting for I/O) is waiting for a disk read or write; sleeping, pipes and sockets are
state S and do not count. Probing the states several times per system sample gives the share of the
interval in which the job was blocked on I/O.
"""

from __future__ import annotations

import os
from collections.abc import Iterable


def _thread_states(pid: int) -> Iterable[bytes]:
    """The state letter of each thread of `pid` (threads or the process may end while this reads)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        end = stat.rfind(b")")  # the command name in parentheses may itself contain spaces or ")"
        if end > 0:
            yield stat[end + 2 : end + 3]


class JobIoWait:
    """Counts the probes in which a thread of the job was in state D; `take()` gives the percentage."""

    def __init__(self, pid: int | None = None) -> None:
        self.pid = pid if pid is not None else os.getpid()
        self.available = os.path.isdir(f"/proc/{self.pid}/task")
        self.reason = None if self.available else "thread states are unreadable here (needs Linux /proc)"
        self.pids: list[int] = [self.pid]
        self._probes = 0
        self._blocked = 0

    def set_children(self, pids: Iterable[int]) -> None:
        """The job's child processes (loader workers come and go with epochs); refreshed per sample."""
        self.pids = [self.pid, *pids]

    def blocked_now(self) -> bool:
        return any(state == b"D" for pid in self.pids for state in _thread_states(pid))

    def probe(self) -> None:
        if self.available:
            self._probes += 1
            self._blocked += self.blocked_now()

    def take(self) -> float | None:
        """The percentage of probes since the last call in which the job was blocked on I/O."""
        if not self._probes:
            return None
        percent = 100.0 * self._blocked / self._probes
        self._probes = self._blocked = 0
        return percent
