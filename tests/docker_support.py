"""The project's image, built by docker/build.sh, and containers run from it for the tests.

Tests that need the image call `built_image()` from a session fixture: it skips them, with the reason,
where no Docker engine answers, and builds (or reuses, when its build inputs are unchanged) the image once.
Containers are named `dogbreed-test-...` and removed, even when a test times out.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import ROOT


def docker_unavailable() -> str | None:
    """Why no container can run here, or None when the Docker engine answers."""
    if shutil.which("docker") is None:
        return "docker is not installed (.ci/run installs docker.io where it runs as root)"
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "docker info did not answer within 60 s"
    if done.returncode != 0:
        return f"the Docker engine does not answer: {(done.stderr or done.stdout).strip()[-500:]}"
    return None


def built_image(smdebug: bool = False) -> str:
    """The tag of the image docker/build.sh builds (or finds up to date); skips where Docker is missing."""
    reason = docker_unavailable()
    if reason is not None:
        pytest.skip(reason)
    command = [str(ROOT / "docker" / "build.sh"), *(["--smdebug"] if smdebug else [])]
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=2400)
    assert done.returncode == 0, f"docker/build.sh failed:\n{done.stderr[-6000:]}"
    # Shown with -s, and in the log of a failing test: what the build did and how long it took.
    print(done.stderr[-3000:], f"\nbuild.sh: {time.monotonic() - started:.0f} s")
    return done.stdout.strip().splitlines()[-1]


def container_name() -> str:
    return f"dogbreed-test-{uuid.uuid4().hex[:10]}"


def run_container(
    image: str, args: Sequence[str], options: Sequence[str] = (), timeout: float = 900
) -> subprocess.CompletedProcess:
    """`docker run --rm [options] image args`, to its end; the container is removed even on a timeout."""
    name = container_name()
    command = ["docker", "run", "--rm", "--name", name, *options, image, *args]
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


@contextmanager
def started_container(image: str, args: Sequence[str], options: Sequence[str] = ()) -> Iterator[str]:
    """A detached container; yields its name, and removes it (with its log printed) afterwards."""
    name = container_name()
    done = subprocess.run(
        ["docker", "run", "-d", "--name", name, *options, image, *args], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    try:
        yield name
    finally:
        print(container_log(name)[-4000:])
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def container_log(name: str) -> str:
    done = subprocess.run(["docker", "logs", name], capture_output=True, text=True)
    return done.stdout + done.stderr


def container_running(name: str) -> bool:
    done = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Running}}", name], capture_output=True, text=True
    )
    return done.stdout.strip() == "true"


def mount(host: Path, container: str, read_only: bool = False) -> list[str]:
    return ["-v", f"{host}:{container}{':ro' if read_only else ''}"]
