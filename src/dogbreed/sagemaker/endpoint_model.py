"""The deployable model.tar.gz of an endpoint: from a local exported model or an archive in S3.

Either way the archive is made by `dogbreed.modeldir.archive` (weights.pt and model.json at the root,
code/ with inference.py, requirements.txt and the dogbreed package), so the endpoint always runs this
project's current handler: a training job's output carries the code/ of the version that trained it (or
none, from versions before fit() exported it), and repacking replaces it.
"""

from __future__ import annotations

import logging
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from dogbreed.modeldir.archive import pack_model
from dogbreed.modeldir.format import model_dir_problem
from dogbreed.modeldir.runtime_wheels import python_of_py_version
from dogbreed.sagemaker.session import SageMakerSetupError

log = logging.getLogger(__name__)


def model_source(cfg: DictConfig, local: bool = False) -> Path | str:
    """model_dir (a local exported model) or model_data (an S3 archive; in local mode also a file:// one):
    exactly one, checked locally."""
    model_dir, model_data = cfg.get("model_dir"), cfg.get("model_data")
    if model_dir and model_data:
        raise SageMakerSetupError(f"give model_dir or model_data, not both: {model_dir}, {model_data}")
    if model_data:
        schemes = ("s3://", "file://") if local else ("s3://",)
        if not str(model_data).startswith(schemes) or not str(model_data).endswith(".tar.gz"):
            raise SageMakerSetupError(
                f"model_data must be an {' or '.join(x + '.../model.tar.gz' for x in schemes)} URI,"
                f" got {model_data}"
            )
        if str(model_data).startswith("file://") and not Path(str(model_data)[7:]).is_file():
            raise SageMakerSetupError(f"model_data={model_data}: no such file")
        return str(model_data)
    if not model_dir:
        raise SageMakerSetupError(
            "nothing to deploy: set model_dir=runs/train/<run>/model (packed and uploaded)"
            " or model_data=s3://<bucket>/<key>/model.tar.gz"
        )
    _check_exported_model(Path(model_dir).expanduser(), f"model_dir={model_dir}")
    return Path(model_dir).expanduser()


def _check_exported_model(folder: Path, what: str) -> None:
    why = model_dir_problem(folder)
    if why:
        raise SageMakerSetupError(f"{what} {why}: it is not an exported model (like runs/train/<run>/model)")


def stage_model(cfg: DictConfig, session: Any, name: str, source: Path | str, dry_run: bool) -> str:
    """Pack the model (adding code/) and upload it; return the S3 URI of the deployable archive."""
    backend = cfg.backend
    key_prefix = f"{backend.prefix}/models/{name}"
    uri = f"s3://{session.default_bucket()}/{key_prefix}/model.tar.gz"
    archive = Path(cfg.run_dir) / "model.tar.gz"
    # The serving runtime's wheels for the endpoint's Python ship in code/wheels/ (no index at start-up).
    python = python_of_py_version(str(cfg.endpoint.py_version))
    if isinstance(source, Path):
        pack_model(source, archive, python)
    elif dry_run:
        log.info("dry run: %s would be downloaded, given code/ and uploaded to %s", source, uri)
        return uri
    else:
        _repack_s3_model(session, source, archive, python)
    if dry_run:
        log.info("dry run: %s would be uploaded to %s", archive, uri)
        return uri
    log.info("uploading %s to %s", archive, uri)
    return session.upload_data(str(archive), bucket=session.default_bucket(), key_prefix=key_prefix)


def stage_local_model(cfg: DictConfig, session: Any, source: Path | str) -> str:
    """Local mode: the deployable archive in a folder of its own under the run directory (the SDK extracts
    it beside itself and mounts that folder as /opt/ml/model); its file:// URI. No runtime wheels: the
    image has its serving runtime baked in."""
    archive = Path(cfg.run_dir).resolve() / "endpoint-model" / "model.tar.gz"
    archive.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(source, Path):
        pack_model(source, archive)
    else:
        _repack_s3_model(session, source, archive, None)
    return "file://" + str(archive)


def _repack_s3_model(session: Any, model_data: str, archive: Path, python: str | None) -> None:
    """model_data (e.g. a training job's output; file:// in local mode) -> archive with this project's code/
    added (and the serving runtime's wheels for `python`, the endpoint's Python)."""
    from botocore.exceptions import ClientError

    bucket, _, key = model_data[len("s3://") :].partition("/")
    with tempfile.TemporaryDirectory(prefix="dogbreed-model-") as tmp:
        local = Path(tmp) / "source.tar.gz"
        if model_data.startswith("file://"):
            local = Path(model_data[len("file://") :])
        else:
            log.info("downloading %s", model_data)
            try:
                session.boto_session.client("s3").download_file(bucket, key, str(local))
            except ClientError as e:
                raise SageMakerSetupError(f"model_data={model_data} cannot be read: {e}") from None
        model_dir = Path(tmp) / "model"
        with tarfile.open(local) as tar:
            tar.extractall(model_dir, filter="data")
        _check_exported_model(model_dir, f"model_data={model_data}")
        pack_model(model_dir, archive, python)
