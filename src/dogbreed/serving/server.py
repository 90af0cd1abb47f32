"""Run the local server from the deploy config (conf/deploy.yaml `server` and `limits`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from dogbreed.modeldir.format import model_dir_problem
from dogbreed.serving.app import ServerSettings, create_app
from dogbreed.serving.decoding import RequestLimits
from dogbreed.serving.preprocess_pool import DecodeBudget
from dogbreed.serving.protocol import bounded_protocol

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger(__name__)
# Files the server holds besides its connections: the model's files, the workers' pipes, logs, the loop.
FILES_BESIDES_CONNECTIONS = 64


def settings_from_config(cfg: DictConfig) -> ServerSettings:
    server, limits = cfg.server, cfg.limits
    return ServerSettings(
        max_batch_size=int(server.max_batch_size),
        max_wait_ms=float(server.max_wait_ms),
        threads=server.threads,
        preprocess_workers=server.preprocess_workers,
        device=str(server.device),
        engine=str(server.engine),
        optimize=str(server.optimize),
        default_topk=int(server.default_topk),
        body_timeout_s=float(server.body_timeout_s),
        max_queue=None if server.max_queue is None else int(server.max_queue),
        retry_after_s=int(server.retry_after_s),
        page=bool(server.page),
        decode_budget=DecodeBudget(
            None if limits.decode_timeout_s is None else float(limits.decode_timeout_s),
            float(limits.decode_s_per_megapixel),
        ),
        limits=RequestLimits(
            max_body_bytes=int(limits.max_body_bytes),
            max_pixels=int(limits.max_pixels),
            max_images=int(limits.max_images),
            max_request_pixels=int(limits.max_request_pixels),
            max_aspect_ratio=float(limits.max_aspect_ratio),
            max_decode_bytes=int(limits.max_decode_bytes),
            max_jpeg_scans=int(limits.max_jpeg_scans),
        ),
    )


def check_model_dir(model_dir: str | Path) -> Path:
    path = Path(model_dir).expanduser()
    why = model_dir_problem(path)
    if why:
        raise FileNotFoundError(
            f"model_dir={model_dir} {why}: pass the exported model of a run, "
            "e.g. model_dir=runs/train/<run>/model"
        )
    return path


def open_file_room(connections: int) -> int:
    """How many connections the open-file limit leaves room for, at most `connections`: the soft limit
    (often 1,024) is raised toward the hard one first, as far as `connections` needs."""
    try:
        import resource
    except ImportError:  # not on POSIX: the system's own limit applies
        return connections
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + FILES_BESIDES_CONNECTIONS
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        soft = raised
    room = (
        connections if soft == resource.RLIM_INFINITY else min(connections, soft - FILES_BESIDES_CONNECTIONS)
    )
    if room < connections:
        log.warning(
            "server.max_connections=%d lowered to %d: the open-file limit (ulimit -n) is %d",
            connections,
            room,
            soft,
        )
    return max(room, 1)


def uvicorn_config(app: object, server: DictConfig) -> uvicorn.Config:
    """uvicorn's settings from conf/deploy.yaml `server`: idle connections are bounded and closed early by
    the protocol (serving/protocol.py); requests in flight by the app's admission (`server.max_queue`).
    uvicorn's own limit_concurrency stays off: it counts idle connections, so silent sockets would turn
    every request into a 503."""
    import uvicorn

    max_connections = None if server.max_connections is None else open_file_room(int(server.max_connections))
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=str(server.host),
        port=int(server.port),
        log_level=str(server.log_level),
        http=bounded_protocol(float(server.header_timeout_s), max_connections),
        timeout_keep_alive=int(server.keep_alive_timeout_s),
    )


def serve_local(cfg: DictConfig) -> None:
    """Blocks until interrupted: one process, so that concurrent requests meet in one batcher."""
    import uvicorn

    app = create_app(check_model_dir(cfg.model_dir), settings_from_config(cfg))
    uvicorn.Server(uvicorn_config(app, cfg.server)).run()
