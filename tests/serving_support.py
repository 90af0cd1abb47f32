"""Helpers for the serving tests: a real uvicorn server on 127.0.0.1 and plain HTTP calls to it."""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from PIL import Image


@dataclass
class Answer:
    status: int
    body: bytes
    content_type: str

    def json(self) -> dict:
        return json.loads(self.body)


def request(
    port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None, chunked=False
) -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        payload = iter([body[i : i + 65536] for i in range(0, len(body), 65536)]) if chunked else body
        conn.request(method, path, body=payload, headers=headers or {}, encode_chunked=chunked)
        response = conn.getresponse()
        return Answer(response.status, response.read(), response.getheader("content-type", ""))
    finally:
        conn.close()


def invoke(port: int, body: bytes, content_type: str | None, accept: str | None = None, query="") -> Answer:
    headers = {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if accept is not None:
        headers["Accept"] = accept
    return request(port, "POST", f"/invocations{query}", body, headers)


@contextmanager
def running_server(app) -> Iterator[int]:
    """Serve `app` with uvicorn in a thread on a free 127.0.0.1 port; yields the port once /ping is 200."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # bound here and handed over: no race for the port
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until_ready(port, thread)
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        sock.close()


def wait_until_ready(port: int, thread: threading.Thread, timeout: float = 120.0) -> None:
    """Poll GET /ping until it answers 200 (the model is loaded); fail early if the server died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError("the server thread stopped before answering /ping")
        try:
            if request(port, "GET", "/ping").status == 200:
                return
        except OSError:
            pass  # not listening yet
        time.sleep(0.05)  # polling interval, not synchronisation: readiness is the /ping answer
    raise TimeoutError(f"no 200 from /ping on port {port} within {timeout} s")


def encode(image: Image.Image | Path, fmt: str) -> bytes:
    if isinstance(image, Path):
        image = Image.open(image).convert("RGB")
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def through_sagemaker_handler(
    model_dir: Path,
    requests: list[dict],
    work: Path,
    env: dict[str, str] | None = None,
    python: Path | None = None,
) -> dict:
    """Run `requests` ({"body_file", "content_type", "accept"}) through the real SageMaker PyTorch handler
    service in a process of its own (of `python`, this one's by default), with `dogbreed` imported from the
    model's code/ as in the container. Returns the driver's report:
    {"dogbreed_file", "engine", "results": [{"status", "content_type", "body"}, ...]}."""
    (work / "requests.json").write_text(json.dumps(requests))
    environ = {**os.environ, "PYTHONPATH": str(model_dir / "code"), **(env or {})}
    environ.pop("SAGEMAKER_PROGRAM", None)  # the toolkit's default module name is "inference"
    driver = Path(__file__).parent / "sagemaker_handler_driver.py"
    command = [str(python or sys.executable), str(driver), str(model_dir), "requests.json"]
    done = subprocess.run(command, cwd=work, env=environ, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def export_untrained_model(folder: Path) -> Path:
    """An untrained ResNet18 for three classes, exported for 64-px inputs: for tests of the serving and
    model-folder mechanics, where what it predicts does not matter."""
    from dogbreed.data.preprocessing import preprocessing_for
    from dogbreed.model.network import build_network
    from dogbreed.modeldir.writer import export_model

    return export_model(
        build_network("resnet18", 3, None),
        folder,
        arch="resnet18",
        class_names=["001.a", "002.b", "003.c"],
        preprocessing=preprocessing_for("resnet18", 64),
    )
