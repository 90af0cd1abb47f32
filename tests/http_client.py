"""Plain HTTP clients of a real server on 127.0.0.1 for the tests and the benchmarks: a free port, the server
started as serve/deploy.py, GET/POST with timings, idle sockets."""

from __future__ import annotations

import http.client
import json
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


def rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def get_json(host: str, port: int, path: str) -> dict:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return json.loads(response.read()) if response.status == 200 else {"status": response.status}
    finally:
        conn.close()


def ping_status(host: str, port: int) -> int | str:
    try:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        try:
            conn.request("GET", "/ping")
            return conn.getresponse().status
        finally:
            conn.close()
    except OSError as exc:
        return type(exc).__name__


def free_port() -> int:
    """A 127.0.0.1 port nothing listens on now, for a server started in another process."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def local_server(
    model_dir: str | Path,
    overrides: list[str] = (),
    log: Path | None = None,
    run_dir: str | Path = "/tmp/dogbreed-load-test",
):
    """serve/deploy.py in a subprocess, on its default host; yields (port, pid) once /ping answers 200."""
    port = free_port()
    out = open(log or os.devnull, "w")  # noqa: SIM115 - closed below
    cmd = [
        sys.executable,
        str(ROOT / "serve" / "deploy.py"),
        f"model_dir={model_dir}",
        f"server.port={port}",
        "server.log_level=warning",
        f"hydra.run.dir={run_dir}",
        "hydra.output_subdir=null",
        *overrides,
    ]
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    server = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 300
        while ping_status("127.0.0.1", port) != 200:
            if server.poll() is not None:
                raise RuntimeError(f"the server exited with {server.returncode}; see {log or 'its log'}")
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not answer /ping within 300 s")
            time.sleep(0.1)  # polling interval; readiness is the /ping answer
        yield port, server.pid
    finally:
        server.terminate()
        server.wait(timeout=60)
        out.close()


def post(port: int, body: bytes, content_type: str) -> tuple[int, dict, float]:
    """(status, JSON answer, seconds) of POST /invocations on a connection of its own."""
    import http.client

    start = time.monotonic()
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    try:
        conn.request("POST", "/invocations", body=body, headers={"Content-Type": content_type})
        response = conn.getresponse()
        body = response.read()
        answer = json.loads(body) if response.getheader("content-type") == "application/json" else {}
        return response.status, answer, time.monotonic() - start
    finally:
        conn.close()


def timed_get(port: int, path: str) -> tuple[int, float]:
    import http.client

    start = time.monotonic()
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status, time.monotonic() - start
    finally:
        conn.close()


def tree_pss_mb(pid: int) -> float:
    """Proportional set size of `pid` and every process under it (its preprocessing workers and their
    fork server), in MB: shared pages counted once in all."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    tree = [pid]
    for parent in tree:
        tree += [child for child, of in parents.items() if of == parent]
    total_kb = 0
    for member in tree:
        try:
            rollup = Path(f"/proc/{member}/smaps_rollup").read_text()
        except OSError:
            continue
        total_kb += next(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:"))
    return round(total_kb / 1024, 1)


def allow_open_files(count: int) -> None:
    """Raise this process's soft open-file limit to `count` if it is lower (the hard limit permitting)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < count:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(count, hard), hard))


@contextmanager
def idle_sockets(port: int, count: int) -> Iterator[list[socket.socket]]:
    """`count` connections to the server that send nothing."""
    with ExitStack() as stack:
        yield [stack.enter_context(socket.create_connection((HOST, port), timeout=10)) for _ in range(count)]


def still_open(sockets: list[socket.socket]) -> int:
    """How many of `sockets` the server has not closed (a closed one reads as end of file at once)."""
    count = 0
    for sock in sockets:
        sock.setblocking(False)  # with a timeout set, recv would wait for data first
        try:
            count += sock.recv(1, socket.MSG_PEEK) != b""
        except BlockingIOError:
            count += 1  # nothing to read and no end of file: open
        except OSError:
            pass  # reset by the server
    return count


def wait_until_busy(port: int, timeout_s: float = 30.0) -> None:
    """Poll /stats until a preprocessing worker holds a request."""
    deadline = time.monotonic() + timeout_s
    while get_json(HOST, port, "/stats").get("preprocess_workers_busy", 0) < 1:
        if time.monotonic() > deadline:
            raise TimeoutError("no preprocessing worker became busy")
        time.sleep(0.01)  # polling interval; the condition is the server's own count
