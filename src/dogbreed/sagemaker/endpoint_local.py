"""A real-time endpoint in SageMaker's local mode: `serve/deploy.py backend=sagemaker
endpoint.instance_type=local endpoint.image_uri=<image>`.

The SDK creates the model, endpoint config and endpoint as for SageMaker, but serves them from the image on
this machine with Docker Compose (the container's port 8080 published on server.port) and waits for /ping.
The endpoint lives as long as this process: it serves in the foreground until Ctrl-C or SIGTERM, then its
container is removed.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
from typing import Any

from omegaconf import DictConfig

from dogbreed.sagemaker.endpoint import EndpointError, create_endpoint, endpoint_name_of
from dogbreed.sagemaker.endpoint_model import model_source, stage_local_model
from dogbreed.sagemaker.local_mode import (
    LOCAL_ROLE,
    check_image,
    local_session,
    remove_containers,
    running_containers,
    stop_containers,
)
from dogbreed.sagemaker.session import SageMakerSetupError

log = logging.getLogger(__name__)

UNUSED_CODE_LOCATION = "s3://local-mode-unused/code"
# How often the foreground loop checks that the endpoint's container still runs.
WATCH_INTERVAL_S = 2.0


def _check_local_endpoint(cfg: DictConfig) -> None:
    if cfg.get("teardown"):
        raise SageMakerSetupError(
            "teardown=true removes an endpoint in SageMaker; a local-mode endpoint stops with the deploy.py"
            " that serves it (Ctrl-C)"
        )
    if (cfg.endpoint.get("autoscaling") or {}).get("enabled"):
        raise SageMakerSetupError(
            "endpoint.autoscaling.enabled=true needs an endpoint in SageMaker: drop it with"
            f" endpoint.instance_type={cfg.endpoint.instance_type}"
        )
    port = int(cfg.server.port)
    with socket.socket() as probe:  # Docker publishes the port on every interface
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            raise SageMakerSetupError(
                f"server.port={port} is in use: the local endpoint is published there; choose another"
                " (server.port=8081)"
            ) from None


def deploy_local_endpoint(cfg: DictConfig) -> dict:
    """Serve the model from the image through the SDK's local mode until interrupted; the endpoint's
    description (InService) once it stops."""
    _check_local_endpoint(cfg)
    endpoint = cfg.endpoint
    image = check_image(endpoint.get("image_uri"), "endpoint.image_uri")
    source = model_source(cfg, local=True)
    name = endpoint_name_of(cfg)
    port = int(cfg.server.port)
    session = local_session(cfg.backend, label=name, serving_port=port)
    model_data = stage_local_model(cfg, session, source)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        try:
            role = cfg.backend.get("role") or LOCAL_ROLE
            # The SDK resolves a bucket for code even when it uploads none (local code): name one, so that
            # it does not ask AWS for the default bucket; nothing is ever written there.
            create_endpoint(cfg, session, role, image, model_data, name, code_location=UNUSED_CODE_LOCATION)
        except RuntimeError as e:  # the SDK gave up waiting for /ping, or Compose failed
            raise EndpointError(
                f"local endpoint {name} did not come up: {' '.join(str(e).split())} (its container's log"
                " is above)"
            ) from None
        described = session.sagemaker_client.describe_endpoint(EndpointName=name)
        print(local_usage(name, port, image), flush=True)
        _serve_until_interrupted(name)
        return described
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM, while starting or serving
        log.info("stopping local endpoint %s", name)
        return {}
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop(session, name)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the endpoint as Ctrl-C does


def _serve_until_interrupted(name: str) -> None:
    """Return never: KeyboardInterrupt (Ctrl-C, SIGTERM) ends it, or the container ending by itself."""
    idle = threading.Event()  # never set: each wait ends after the interval, or by a signal
    while running_containers(name):
        idle.wait(WATCH_INTERVAL_S)
    raise EndpointError(f"local endpoint {name}: its container stopped (its log is above)")


def _stop(session: Any, name: str) -> None:
    """Stop the container (SIGTERM: the server drains), remove it, then the SDK's record of the endpoint
    (which also ends its Compose process)."""
    previous = threading.excepthook
    threading.excepthook = _compose_exit_logged  # the SDK's thread raises when Compose exits non-zero
    try:
        stop_containers(name)
        removed = remove_containers(name)
        _forget(session, name)
    finally:
        threading.excepthook = previous
    print(f"local endpoint {name} stopped ({len(removed)} container(s) removed)", file=sys.stderr, flush=True)


def _compose_exit_logged(args: threading.ExceptHookArgs) -> None:
    log.info("local endpoint: %s", " ".join(str(args.exc_value).split()))


def _forget(session: Any, name: str) -> None:
    client = session.sagemaker_client
    for call, key in (
        (client.delete_endpoint, "EndpointName"),
        (client.delete_endpoint_config, "EndpointConfigName"),
        (client.delete_model, "ModelName"),
    ):
        try:
            call(**{key: name})
        except Exception as e:  # noqa: BLE001 - nothing of it was created: nothing to delete
            log.debug("local endpoint %s: %s", name, e)


def local_usage(name: str, port: int, image: str) -> str:
    """How to call the local endpoint: over HTTP, or through the SDK as a SageMaker endpoint."""
    return "\n".join(
        [
            f"endpoint={name} (InService, local mode, image {image}, port {port})",
            "query it with an image's raw bytes:",
            "  curl -s -H 'Content-Type: image/jpeg' --data-binary @dog.jpg"
            f" http://127.0.0.1:{port}/invocations",
            "  or through the SDK: breed_predictor(name, sagemaker_session=session).predict(image_bytes)"
            " (dogbreed.sagemaker.endpoint), session a sagemaker.local.LocalSession whose config is"
            f" {{'local': {{'serving_port': {port}}}}}",
            "stop it: Ctrl-C (or SIGTERM) here",
        ]
    )
