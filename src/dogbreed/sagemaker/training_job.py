"""The training job: its checks, data channels, security settings, the PyTorch estimator that runs this
project's train.py with the run's overrides, and the launch (a dry run prints the request instead).

`launch_training(cfg, overrides)` packages this project (train.py, conf/, src/, a requirements file) and
starts a PyTorch script-mode job whose entry point is the same train.py; the job's hyperparameters are the
run's Hydra overrides. `dry_run=true` lets the SDK build every request but answers them here, so nothing is
sent or uploaded and no credentials are needed.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dogbreed.config.overrides import (
    hyperparameters_from_overrides,
    override_key,
    overrides_from_hyperparameters,
)
from dogbreed.config.secrets import mask_secrets
from dogbreed.sagemaker.dry_run import DryRun, sdk_log_of, show_request
from dogbreed.sagemaker.local_mode import (
    LOCAL_ROLE,
    check_image,
    check_local_job,
    file_uri,
    is_local,
    local_channels,
    local_session,
)
from dogbreed.sagemaker.metrics import metric_definitions
from dogbreed.sagemaker.rules import debugger_settings
from dogbreed.sagemaker.session import (
    SageMakerSetupError,
    aws_errors,
    check_backend,
    make_session,
)
from dogbreed.sagemaker.source_bundle import PROJECT_ROOT, export_requirements, project_root, stage_source

log = logging.getLogger(__name__)


def check_job_overrides(overrides: Sequence[str], what: str = "the training job") -> None:
    """Compose train.py's config with the overrides a job will receive, as train.py will in the container:
    an override it cannot take (a key of tune.py's, a typo) stops the launch here, not every job later."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    job_overrides = overrides_from_hyperparameters(hyperparameters_from_overrides(overrides))
    global_hydra = GlobalHydra.instance()  # launched from a Hydra app: keep its state and put it back
    saved = global_hydra.hydra if global_hydra.is_initialized() else None
    global_hydra.clear()
    try:
        with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
            compose("train", overrides=job_overrides)
    except HydraException as e:
        first = str(e).splitlines()[0]
        raise SageMakerSetupError(
            f"{what} would refuse its hyperparameters {mask_secrets(job_overrides)}: {mask_secrets(first)}"
        ) from None
    finally:
        GlobalHydra.instance().clear()
        if saved is not None:
            GlobalHydra.instance().initialize(saved)


def check_job_settings(cfg: DictConfig) -> None:
    """Combinations that a job would accept and then run wrong (or hang), refused before launch."""
    backend, trainer = cfg.backend, cfg.trainer
    count = int(backend.instance_count)
    strategy = trainer.get("strategy") or "auto"
    if isinstance(strategy, DictConfig):  # trainer=ddp: Lightning's DDP given a peer timeout
        strategy = str(strategy.get("_target_", "")).rsplit(".", 1)[-1]
    num_nodes = int(trainer.get("num_nodes") or 1)
    if count > 1 and not (strategy.startswith("ddp") or "DDP" in strategy):
        raise SageMakerSetupError(
            f"backend.instance_count={count} trains one model across {count} instances with DDP:"
            f" add trainer=ddp (trainer.strategy is {strategy})"
        )
    if num_nodes not in (1, count):
        raise SageMakerSetupError(
            f"trainer.num_nodes={num_nodes} disagrees with backend.instance_count={count}:"
            f" drop trainer.num_nodes (the job sets it to the instance count) or set both alike"
        )
    image = backend.get("image_uri")
    if (backend.get("debugger") or {}).get("enabled") and not image:
        raise SageMakerSetupError(
            "backend.debugger.enabled=true: SageMaker Debugger's rules need smdebug in the training image,"
            " and the PyTorch container has none; use debugger=on (our rules run inside the job) or set"
            " backend.image_uri to an image with smdebug"
        )
    if backend.get("network_isolation") and not image:
        raise SageMakerSetupError(
            "backend.network_isolation=true: the job cannot pip-install its requirements.txt without a"
            " network; set backend.image_uri to an image with this project's dependencies (docker/Dockerfile)"
        )


# The data channel of a dry run given no data: clearly not a real location.
PLACEHOLDER_DATA = "PLACEHOLDER-no-data-given"


def data_inputs(
    cfg: DictConfig, session: Any, dry_run: bool, root_given: bool = True
) -> dict[str, str] | None:
    """The job's channels: configured S3 URIs, or data.root uploaded once (reused later); None: no data.

    A dry run where data.root was not given (`root_given`) and its default is not here shows a placeholder."""
    backend = cfg.backend
    if backend.get("inputs"):
        inputs = (
            OmegaConf.to_container(backend.inputs)
            if isinstance(backend.inputs, DictConfig)
            else backend.inputs
        )
        channels = {"data": inputs} if isinstance(inputs, str) else dict(inputs)
        bad = {k: v for k, v in channels.items() if not str(v).startswith("s3://")}
        if bad:
            raise SageMakerSetupError(f"backend.inputs must be s3:// URIs, got {bad}")
        return channels
    if cfg.data.get("synthetic"):
        return None  # the container generates the embedded data set itself
    from dogbreed.data.layout import DataLayoutError, inspect_layout

    root = Path(cfg.data.root)
    if dry_run and not root_given and not root.exists():  # a fresh checkout: show the request anyway
        uri = f"s3://{session.default_bucket()}/{backend.prefix}/data/{PLACEHOLDER_DATA}"
        log.warning(
            "dry run: data.root=%s does not exist, so the request shows the placeholder input %s; a launch"
            " needs data.root=<folder with train/ valid/ test/> or backend.inputs=s3://<bucket>/<prefix>",
            root,
            uri,
        )
        return {"data": uri}
    try:
        inspect_layout(root)  # a bad local folder stops here, before anything is uploaded
    except DataLayoutError as e:
        raise SageMakerSetupError(
            f"data.root={root}: {e} (or give the data in S3: backend.inputs=s3://<bucket>/<prefix>)"
        ) from None
    key_prefix = f"{backend.prefix}/data/{root.resolve().name}"
    uri = f"s3://{session.default_bucket()}/{key_prefix}"
    if dry_run:
        log.info("dry run: %s would be uploaded to %s", root, uri)
    elif session.list_s3_files(session.default_bucket(), key_prefix + "/") and not backend.data_reupload:
        log.info("reusing the data already in %s (backend.data_reupload=true to refresh it)", uri)
    else:
        log.info("uploading %s to %s", root, uri)
        uri = session.upload_data(str(root), bucket=session.default_bucket(), key_prefix=key_prefix)
    return {"data": uri}


def job_name_for(base_job_name: str, tuning: bool = False) -> str:
    """A unique job name the way the SDK makes them (base name + timestamp), chosen before launch so that
    the job's own checkpoint location can carry it. Tuning job names are capped at 32 characters."""
    from sagemaker.utils import name_from_base

    if tuning:
        return name_from_base(base_job_name, max_length=32, short=True)
    return name_from_base(base_job_name)


def _optional(value: Any) -> Any:
    # null: leave the argument to the SDK, which then takes the value from its config file (admin defaults).
    return None if value is None else value


def security_settings(backend: DictConfig) -> dict[str, Any]:
    """VPC, network isolation, inter-container encryption, KMS keys and input mode as estimator arguments;
    unset ones stay None so that the SDK's config file can fill them."""
    vpc = backend.get("vpc") or {}
    kms = backend.get("kms") or {}
    return {
        "subnets": list(vpc.get("subnets") or []) or None,
        "security_group_ids": list(vpc.get("security_group_ids") or []) or None,
        "enable_network_isolation": _optional(backend.get("network_isolation")),
        "encrypt_inter_container_traffic": _optional(backend.get("encrypt_inter_container_traffic")),
        "volume_kms_key": _optional(kms.get("volume")),
        "output_kms_key": _optional(kms.get("output")),
        "input_mode": str(backend.get("input_mode") or "File"),
    }


def build_estimator(
    cfg: DictConfig,
    overrides: Sequence[str],
    session: Any,
    role: str,
    source_dir: Path,
    checkpoint_name: str | None = None,
):
    """The PyTorch script-mode estimator that runs this project's train.py with this run's overrides.

    `checkpoint_name` (the training or tuning job's name) gives the job its own checkpoint location.
    """
    from sagemaker.pytorch import PyTorch

    backend = cfg.backend
    max_wait = (backend.get("max_wait_s") or 2 * backend.max_run_s) if backend.spot else None
    image = backend.get("image_uri")
    locations = job_locations(cfg, session, checkpoint_name)
    tracking = job_tracking(cfg, locations.pop("tensorboard"))
    tags = {**tracking.tags, **(backend.get("tags") or {})}
    environment = {**tracking.environment, **(backend.get("environment") or {})}
    extra: dict[str, Any] = {}
    if tracking.tensorboard_output and not session.local_mode:  # where Studio's TensorBoard finds the logs
        from sagemaker.debugger import TensorBoardOutputConfig

        extra["tensorboard_output_config"] = TensorBoardOutputConfig(**tracking.tensorboard_output)
    return PyTorch(
        entry_point="train.py",
        source_dir=str(source_dir),
        role=role,
        instance_type=backend.instance_type,
        instance_count=backend.instance_count,
        volume_size=backend.volume_size_gb,
        framework_version=None if image else str(backend.framework_version),
        py_version=None if image else backend.py_version,
        image_uri=image or None,
        hyperparameters=hyperparameters_from_overrides(overrides),
        metric_definitions=metric_definitions(),
        base_job_name=backend.base_job_name,
        use_spot_instances=bool(backend.spot),
        max_run=backend.max_run_s,
        max_wait=max_wait,
        **locations,
        tags=[{"Key": str(k), "Value": str(v)} for k, v in tags.items()],
        environment={str(k): str(v) for k, v in environment.items()},
        sagemaker_session=session,
        **security_settings(backend),
        **debugger_settings(cfg),
        **extra,
    )


def job_locations(cfg: DictConfig, session: Any, checkpoint_name: str | None) -> dict[str, Any]:
    """Where the job's output, code, checkpoints and TensorBoard logs go: under s3://<bucket>/<prefix>/, or in
    local mode the run directory (model.tar.gz and output.tar.gz land there; the code is mounted)."""
    backend = cfg.backend
    if session.local_mode:
        return {"output_path": file_uri(cfg.run_dir), "tensorboard": ""}
    bucket = session.default_bucket()
    checkpoint_s3_uri = backend.get("checkpoint_s3_uri")
    if backend.spot and not checkpoint_s3_uri:
        name = checkpoint_name or backend.base_job_name
        checkpoint_s3_uri = f"s3://{bucket}/{backend.prefix}/checkpoints/{name}"
    return {
        "output_path": f"s3://{bucket}/{backend.prefix}/output",
        "code_location": f"s3://{bucket}/{backend.prefix}/code",
        "checkpoint_s3_uri": checkpoint_s3_uri,
        "tensorboard": f"s3://{bucket}/{backend.prefix}/tensorboard/{backend.base_job_name}",
    }


def job_tracking(cfg: DictConfig, tensorboard: str) -> Any:
    """Tags (the launcher's git commit), environment, TensorBoard output and requirements for tracking."""
    from dogbreed.tracking.sagemaker_job import job_tracking as tracking_of

    return tracking_of(cfg.get("logger"), tensorboard, PROJECT_ROOT)


@contextmanager
def _staged_source(cfg: DictConfig) -> Iterator[Path]:
    from dogbreed.tracking.sagemaker_job import job_requirements

    try:
        project_root()
    except FileNotFoundError as e:  # not a checkout: nothing to ship
        raise SageMakerSetupError(str(e)) from None
    with tempfile.TemporaryDirectory(prefix="dogbreed-source-") as tmp:
        extra = [*job_requirements(cfg.get("logger")), *export_requirements(cfg.get("onnx"))]
        yield stage_source(Path(tmp) / "source", extra)


@contextmanager
def _sdk_never_waits() -> Iterator[None]:
    """The SDK's fit() blocks until the job ends, whatever `wait` says, when MLFLOW_TRACKING_URI is set and
    network isolation is on (to forward metrics); the launcher follows jobs itself (backend.wait, attach=)."""
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved


def _prepare_job(
    cfg: DictConfig, overrides: Sequence[str], kind: str = "training"
) -> tuple[DryRun | None, Any, str, Any]:
    """What every job needs first: the dry-run recorder (if any), a session, the checked role, the data."""
    check_job_settings(cfg)
    if is_local(cfg.backend.instance_type):
        check_local_job(cfg.backend, kind)
        check_image(cfg.backend.get("image_uri"), "backend.image_uri")
        session = local_session(cfg.backend, label=str(cfg.run_dir))
        return None, session, cfg.backend.get("role") or LOCAL_ROLE, local_channels(cfg)
    dry_run = DryRun() if cfg.backend.dry_run else None
    session = make_session(cfg.backend, dry_run)
    role = check_backend(cfg.backend, session, dry_run is not None)
    root_given = any(override_key(o) == "data.root" for o in overrides)
    return dry_run, session, role, data_inputs(cfg, session, dry_run is not None, root_given)


def launch_training(cfg: DictConfig, overrides: Sequence[str]) -> dict:
    """Start (or, with backend.dry_run, print) the training job; return the CreateTrainingJob request.

    With backend.wait, follow it to the end and download what it left (see `attach_training`)."""
    backend = cfg.backend
    with aws_errors():
        dry_run, session, role, inputs = _prepare_job(cfg, overrides)
        check_job_overrides(overrides)
        name = job_name_for(backend.base_job_name)
        with _staged_source(cfg) as source_dir:
            estimator = build_estimator(cfg, overrides, session, role, source_dir, checkpoint_name=name)
            if session.local_mode:  # the job runs here and now, in a container
                return run_local_job(cfg, estimator, inputs, name)
            with _sdk_never_waits(), sdk_log_of(dry_run):
                estimator.fit(inputs, wait=False, job_name=name)
        if dry_run is not None:
            return show_request(
                cfg.run_dir, dry_run.request("CreateTrainingJob"), "training_job_request.json"
            )
        job = estimator.latest_training_job
        log.info("started training job %s", job.name)
        print(f"training_job={job.name}", file=sys.stderr)
        if backend.wait:
            from dogbreed.sagemaker.results import attach_training

            return attach_training(cfg, session, job.name)
        return job.describe()


def run_local_job(cfg: DictConfig, estimator: Any, inputs: dict[str, str] | None, name: str) -> dict:
    """Run the training job in local mode (the SDK starts the image with Docker Compose and waits), then
    bring its model and output into the run directory as `attach` does for a job in the cloud."""
    from dogbreed.sagemaker.local_mode import remove_containers
    from dogbreed.sagemaker.results import collect_local_training

    print(f"training_job={name} (local mode, image {cfg.backend.image_uri})", file=sys.stderr, flush=True)
    failure = None
    try:
        estimator.fit(inputs, wait=False, job_name=name)
    except RuntimeError as e:  # the SDK's word for a container that exited non-zero
        failure = " ".join(str(e).split())
    finally:
        remove_containers(str(cfg.run_dir))
    return collect_local_training(cfg, estimator.sagemaker_session, name, failure)


def attach(cfg: DictConfig, name: str, kind: str) -> dict:
    """`attach=<job name>`: follow a training or tuning job (backend.wait) and download its results."""
    from dogbreed.sagemaker.results import attach_training, attach_tuning

    if is_local(cfg.backend.instance_type):
        raise SageMakerSetupError(
            f"attach={name} follows a job in SageMaker; a local-mode job ends with the process that ran it,"
            " its results in that run's directory: drop backend.instance_type"
        )
    with aws_errors():
        session = make_session(cfg.backend, bucket_required=False)
        return (attach_tuning if kind == "tuning" else attach_training)(cfg, session, name)
