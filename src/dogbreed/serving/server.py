"""Run the local server from the deploy config (conf/deploy.yaml `server` and `limits`, read by
serving/settings.py)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from dogbreed.modeldir.format import model_dir_problem
from dogbreed.serving.app import create_app
from dogbreed.serving.protocol import bounded_protocol
from dogbreed.serving.settings import ListenSettings, listen_settings, settings_from_config

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger(__name__)
# Files the server holds besides its connections: the model's files, the workers' pipes, logs, the loop.
FILES_BESIDES_CONNECTIONS = 64


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


def uvicorn_config(app: object, listen: ListenSettings) -> uvicorn.Config:
    """uvicorn's settings from conf/deploy.yaml `server` (ListenSettings): idle connections are bounded
    and closed early by the protocol (serving/protocol.py); requests in flight by the app's admission
    (`server.max_queue`). uvicorn's own limit_concurrency stays off: it counts idle connections, so silent
    sockets would turn every request into a 503."""
    import uvicorn

    connections = listen.max_connections
    max_connections = None if connections is None else open_file_room(connections)
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=listen.host,
        port=listen.port,
        log_level=listen.log_level,
        http=bounded_protocol(listen.header_timeout_s, max_connections),
        timeout_keep_alive=listen.keep_alive_timeout_s,
    )


def serve_local(cfg: DictConfig) -> None:
    """Blocks until interrupted: one process, so that concurrent requests meet in one batcher."""
    import uvicorn

    app = create_app(check_model_dir(cfg.model_dir), settings_from_config(cfg))
    uvicorn.Server(uvicorn_config(app, listen_settings(cfg))).run()
