"""Run the local server from the deploy config (conf/deploy.yaml `server` and `limits`)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from dogbreed.serving.app import ServerSettings, create_app
from dogbreed.serving.decoding import RequestLimits
from dogbreed.serving.protocol import protocol_with_head_timeout


def settings_from_config(cfg: DictConfig) -> ServerSettings:
    server, limits = cfg.server, cfg.limits
    return ServerSettings(
        max_batch_size=int(server.max_batch_size),
        max_wait_ms=float(server.max_wait_ms),
        threads=server.threads,
        preprocess_threads=server.preprocess_threads,
        device=str(server.device),
        engine=str(server.engine),
        optimize=str(server.optimize),
        default_topk=int(server.default_topk),
        body_timeout_s=float(server.body_timeout_s),
        max_queue=None if server.max_queue is None else int(server.max_queue),
        retry_after_s=int(server.retry_after_s),
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
    if not (path / "model.json").is_file():
        raise FileNotFoundError(
            f"model_dir={model_dir} holds no model.json: pass the exported model of a run, "
            "e.g. model_dir=runs/train/<run>/model"
        )
    return path


def serve_local(cfg: DictConfig) -> None:
    """Blocks until interrupted: one process, so that concurrent requests meet in one batcher."""
    import uvicorn

    app = create_app(check_model_dir(cfg.model_dir), settings_from_config(cfg))
    server = cfg.server
    uvicorn.run(
        app,
        host=str(server.host),
        port=int(server.port),
        log_level=str(server.log_level),
        http=protocol_with_head_timeout(float(server.header_timeout_s)),
        # Beyond this many connections and requests in flight uvicorn answers 503 at once: each one
        # holds a body of up to limits.max_body_bytes, so this bounds the memory they take together.
        limit_concurrency=server.limit_concurrency,
    )
