"""SageMaker SDK (v2) sessions, the training job and the tuning job (endpoints: sagemaker_endpoint.py).

`launch_training(cfg, overrides)` packages this project (train.py, conf/, src/, a requirements file) and
starts a PyTorch script-mode job whose entry point is the same train.py; the job's hyperparameters are the
run's Hydra overrides. `dry_run=true` lets the SDK build every request but answers them here, so nothing is
sent or uploaded and no credentials are needed; the CreateTrainingJob request is printed as JSON.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dogbreed.backends.dry_run import DRY_RUN_BUCKET, DRY_RUN_ROLE, DryRun, show_request
from dogbreed.backends.job_spec import (
    PROFILER_REPORT,
    job_rules,
    metric_definitions,
    profiler_report_parameters,
)
from dogbreed.backends.source_bundle import PROJECT_ROOT, project_root, stage_source
from dogbreed.callbacks import METRIC_NAMES
from dogbreed.diagnostics.outcomes import RuleSpec, sagemaker_rule_parameters
from dogbreed.overrides import (
    TUNE_ONLY_KEYS,
    format_override,
    hyperparameters_from_overrides,
    overrides_from_hyperparameters,
    without_keys,
)
from dogbreed.search_space import Param, load_search_space, search_space_to_sagemaker

log = logging.getLogger(__name__)

# Telemetry is an HTTP call outside boto3 that dry runs and tests must not make.
SDK_CONFIG = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}
# Error codes that mean the credentials themselves are bad, not the request.
CREDENTIAL_ERRORS = {
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "RequestExpired",
    "AuthFailure",
    "IncompleteSignature",
}  # fmt: skip  (one set, read as a list)


class SageMakerSetupError(RuntimeError):
    """Something to set before a job can start; the message is one line saying what."""


@contextmanager
def aws_errors() -> Iterator[None]:
    """AWS refusing a call (bad or expired credentials, access denied, a ValidationException) or being out
    of reach becomes a SageMakerSetupError: one line with the service's own message, no traceback."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        yield
    except ClientError as e:
        error = e.response.get("Error", {})
        code, message = error.get("Code", "Error"), error.get("Message", str(e))
        if code in CREDENTIAL_ERRORS:
            hint = "; refresh the credentials (aws sso login, aws configure) or set AWS_PROFILE"
        elif code in ("AccessDenied", "AccessDeniedException"):
            hint = "; the identity or backend.role lacks a permission this needs"
        else:
            hint = ""
        raise SageMakerSetupError(f"AWS refused {e.operation_name}: {code}: {message}{hint}") from None
    except NoCredentialsError:
        raise SageMakerSetupError(
            "no AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
        ) from None
    except BotoCoreError as e:
        raise SageMakerSetupError(f"AWS cannot be reached or configured: {e}") from None


def sdk_config() -> dict:
    """The SDK's own configuration (admin and user config files, SAGEMAKER_*_CONFIG_OVERRIDE): its defaults
    (VPC, KMS keys, tags, ...) apply to our jobs as to any; only telemetry is switched off."""
    from sagemaker.config import load_sagemaker_config

    config = load_sagemaker_config() or {}
    config.setdefault("SchemaVersion", "1.0")
    python_sdk = config.setdefault("SageMaker", {}).setdefault("PythonSDK", {})
    python_sdk.setdefault("Modules", {}).setdefault("TelemetryOptOut", True)
    return config


def _sdk():
    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    # The SDK's config logger prints to stdout unless configured; keep stdout for the dry-run JSON.
    config_logger = logging.getLogger("sagemaker.config")
    if config_logger.level == logging.NOTSET:
        config_logger.setLevel(logging.WARNING)
    logging.getLogger("sagemaker.telemetry").setLevel(logging.WARNING)  # opted out; its notice is noise
    try:
        import sagemaker
    except ImportError as e:
        raise SageMakerSetupError(
            "backend=sagemaker needs the SageMaker SDK v2: pip install -e '.[sagemaker]'"
        ) from e
    return sagemaker


# ----------------------------------------------------------------------------------------------- sessions
def make_session(backend: DictConfig, dry_run: DryRun | None = None, *, bucket_required: bool = True):
    """A sagemaker.Session for `backend`; with `dry_run`, one whose AWS calls are all answered locally.

    `bucket_required=False` is for work that uploads nothing (deleting an endpoint).
    """
    sagemaker = _sdk()
    import boto3

    region = backend.get("region") or boto3.Session().region_name
    if dry_run is not None:
        boto_session = boto3.Session(
            region_name=region or "us-east-1", aws_access_key_id="dry-run", aws_secret_access_key="dry-run"
        )
        boto_session.events.register("before-parameter-build.*.*", dry_run.record)
        boto_session.events.register("before-call.*.*", dry_run.answer)
    else:
        if not region:
            raise SageMakerSetupError("no AWS region: set backend.region=<region> or AWS_REGION")
        boto_session = boto3.Session(region_name=region)
        if boto_session.get_credentials() is None:
            raise SageMakerSetupError(
                "no AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
                " (or run aws configure)"
            )
    bucket = backend.get("bucket") or (DRY_RUN_BUCKET if dry_run is not None else None)
    if dry_run is not None:
        dry_run.bucket = bucket
    if not bucket and bucket_required:
        raise SageMakerSetupError("no S3 bucket: set backend.bucket=<bucket> or SAGEMAKER_BUCKET")
    return sagemaker.Session(boto_session=boto_session, default_bucket=bucket, sagemaker_config=sdk_config())


def check_backend(backend: DictConfig, session: Any, dry_run: bool) -> str:
    """Validate what AWS would reject late; return the role ARN to use."""
    role = resolve_role(backend, dry_run)
    check_instance_type(session, backend.instance_type, "TrainingInstanceType", "backend.instance_type")
    return role


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
            f"{what} would refuse its hyperparameters {job_overrides}: {first}"
        ) from None
    finally:
        GlobalHydra.instance().clear()
        if saved is not None:
            GlobalHydra.instance().initialize(saved)


def check_job_settings(cfg: DictConfig) -> None:
    """Combinations that a job would accept and then run wrong (or hang), refused before launch."""
    backend, trainer = cfg.backend, cfg.trainer
    count = int(backend.instance_count)
    strategy = str(trainer.get("strategy") or "auto")
    num_nodes = int(trainer.get("num_nodes") or 1)
    if count > 1 and not strategy.startswith("ddp"):
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


def resolve_role(backend: DictConfig, dry_run: bool) -> str:
    """The execution role ARN; a placeholder in dry runs, so that they need no account."""
    role = backend.get("role")
    if not role:
        if not dry_run:
            raise SageMakerSetupError(
                "no IAM role: set backend.role=arn:aws:iam::<account>:role/<name> or SAGEMAKER_ROLE"
            )
        role = DRY_RUN_ROLE
        log.warning("backend.role is not set: the dry-run request shows %s", role)
    return role


def check_instance_type(
    session: Any, instance_type: str, shape: str, setting: str, example: str = "ml.g4dn.xlarge"
) -> None:
    """Refuse an instance type the API would refuse (`shape`: the botocore enum that lists them)."""
    # botocore's model of the API lists every instance type a training job (or an endpoint) accepts.
    known = session.sagemaker_client.meta.service_model.shape_for(shape).enum
    if instance_type not in known:
        family = instance_type.split(".")[1] if instance_type.count(".") == 2 else ""
        close = sorted(t for t in known if t.split(".")[1] == family)[:6]
        raise SageMakerSetupError(
            f"unknown instance type {setting}={instance_type}"
            + (f" (same family: {', '.join(close)})" if close else f" (expected e.g. {example})")
        )


# ------------------------------------------------------------------------------------------------- data
def data_inputs(cfg: DictConfig, session: Any, dry_run: bool) -> dict[str, str] | None:
    """The job's channels: configured S3 URIs, or data.root uploaded once (reused later); None: no data."""
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
    from dogbreed.data.folders import DataLayoutError, inspect_layout

    root = Path(cfg.data.root)
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


# -------------------------------------------------------------------------------------------- estimator
def debugger_settings(cfg: DictConfig) -> dict[str, Any]:
    """Estimator keyword arguments for SageMaker Debugger (hook + rules) and the profiler.

    backend.debugger.rules / backend.profiler.rules only pick rules; their parameters and actions come from
    the rules node local runs evaluate (conf/rules/sagemaker.yaml), so one override changes both places.
    """
    from sagemaker.debugger import (
        CollectionConfig,
        DebuggerHookConfig,
        ProfilerConfig,
        ProfilerRule,
        Rule,
        rule_configs,
    )

    backend = cfg.backend
    settings: dict[str, Any] = {"debugger_hook_config": False, "disable_profiler": True}
    debugger = backend.get("debugger") or {}
    if debugger.get("enabled"):
        collections = {
            name: CollectionConfig(name=name, parameters={k: str(v) for k, v in params.items()})
            for name, params in debugger.collections.items()
        }
        settings["debugger_hook_config"] = DebuggerHookConfig(collection_configs=list(collections.values()))
        specs = _job_rules(cfg, "debugger")
        parameters = sagemaker_rule_parameters({name: spec.parameters for name, spec in specs.items()})
        rules = []
        for name, spec in specs.items():
            base = getattr(rule_configs, _snake(name))()
            # A rule brings its own collection settings (e.g. gradients every 500 steps); the SDK merges them
            # with the hook's through a set, so either could win. Give the rule ours for the same collection.
            wanted = [c["CollectionName"] for c in base.get("CollectionConfigurations", [])]
            ours = [collections[c] for c in wanted if c in collections] or None
            # action: stop ends a local run; on SageMaker the same rule stops the job (the role needs
            # sagemaker:StopTrainingJob, or the rule only reports).
            actions = rule_configs.StopTraining() if spec.action == "stop" else None
            rules.append(
                Rule.sagemaker(
                    base, rule_parameters=parameters[name], collections_to_save=ours, actions=actions
                )
            )
        settings["rules"] = rules
    profiler = backend.get("profiler") or {}
    if profiler.get("enabled"):
        settings["disable_profiler"] = False
        settings["profiler_config"] = ProfilerConfig(
            system_monitor_interval_millis=int(profiler.system_monitor_interval_millis)
        )
        specs = _job_rules(cfg, "profiler")
        values = sagemaker_rule_parameters({n: s.parameters for n, s in specs.items()}, as_text=False)
        bases = []
        try:  # the rule classes check their values (percentages within 0-100, positive integers)
            for name in map(str, profiler.rules or []):
                if name == PROFILER_REPORT:
                    shared = profiler_report_parameters(cfg.rules.get("profiler"))
                    bases.append(rule_configs.ProfilerReport(**shared))
                elif name in specs:  # not: switched off in rules.profiler
                    if specs[name].action == "stop":
                        log.warning(
                            "rules.profiler.%s.action=stop: SageMaker profiler rules only report", name
                        )
                    bases.append(getattr(rule_configs, name)(**values[name]))
        except (AssertionError, TypeError) as e:
            raise SageMakerSetupError(f"rules.profiler: SageMaker rejects a value: {e}") from None
        settings.setdefault("rules", []).extend(ProfilerRule.sagemaker(base) for base in bases)
    return settings


def _job_rules(cfg: DictConfig, kind: str) -> dict[str, RuleSpec]:
    try:
        return job_rules(cfg.rules.get(kind), cfg.backend[kind].get("rules"), kind)
    except ValueError as e:
        raise SageMakerSetupError(str(e)) from None


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name))


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
    bucket = session.default_bucket()
    checkpoint_s3_uri = backend.get("checkpoint_s3_uri")
    if backend.spot and not checkpoint_s3_uri:
        name = checkpoint_name or backend.base_job_name
        checkpoint_s3_uri = f"s3://{bucket}/{backend.prefix}/checkpoints/{name}"
    max_wait = (backend.get("max_wait_s") or 2 * backend.max_run_s) if backend.spot else None
    image = backend.get("image_uri")
    tracking = job_tracking(cfg, bucket)
    tags = {**tracking.tags, **(backend.get("tags") or {})}
    environment = {**tracking.environment, **(backend.get("environment") or {})}
    extra: dict[str, Any] = {}
    if tracking.tensorboard_output:  # logger=tensorboard: where Studio's TensorBoard finds the job's logs
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
        output_path=f"s3://{bucket}/{backend.prefix}/output",
        code_location=f"s3://{bucket}/{backend.prefix}/code",
        use_spot_instances=bool(backend.spot),
        max_run=backend.max_run_s,
        max_wait=max_wait,
        checkpoint_s3_uri=checkpoint_s3_uri,
        tags=[{"Key": str(k), "Value": str(v)} for k, v in tags.items()],
        environment={str(k): str(v) for k, v in environment.items()},
        sagemaker_session=session,
        **security_settings(backend),
        **debugger_settings(cfg),
        **extra,
    )


def job_tracking(cfg: DictConfig, bucket: str) -> Any:
    """Tags (the launcher's git commit), environment, TensorBoard output and requirements for tracking."""
    from dogbreed.tracking.sagemaker_job import job_tracking as tracking_of

    tensorboard = f"s3://{bucket}/{cfg.backend.prefix}/tensorboard/{cfg.backend.base_job_name}"
    return tracking_of(cfg.get("logger"), tensorboard, PROJECT_ROOT)


@contextmanager
def _staged_source(cfg: DictConfig) -> Iterator[Path]:
    from dogbreed.tracking.sagemaker_job import job_requirements

    try:
        project_root()
    except FileNotFoundError as e:  # not a checkout: nothing to ship
        raise SageMakerSetupError(str(e)) from None
    with tempfile.TemporaryDirectory(prefix="dogbreed-source-") as tmp:
        yield stage_source(Path(tmp) / "source", job_requirements(cfg.get("logger")))


def _prepare_job(cfg: DictConfig) -> tuple[DryRun | None, Any, str, Any]:
    """What every job needs first: the dry-run recorder (if any), a session, the checked role, the data."""
    check_job_settings(cfg)
    dry_run = DryRun() if cfg.backend.dry_run else None
    session = make_session(cfg.backend, dry_run)
    role = check_backend(cfg.backend, session, dry_run is not None)
    return dry_run, session, role, data_inputs(cfg, session, dry_run is not None)


def launch_training(cfg: DictConfig, overrides: Sequence[str]) -> dict:
    """Start (or, with backend.dry_run, print) the training job; return the CreateTrainingJob request.

    With backend.wait, follow it to the end and download what it left (see `attach_training`)."""
    backend = cfg.backend
    with aws_errors():
        dry_run, session, role, inputs = _prepare_job(cfg)
        check_job_overrides(overrides)
        name = job_name_for(backend.base_job_name)
        with _staged_source(cfg) as source_dir:
            estimator = build_estimator(cfg, overrides, session, role, source_dir, checkpoint_name=name)
            estimator.fit(inputs, wait=False, job_name=name)
        if dry_run is not None:
            return show_request(
                cfg.run_dir, dry_run.request("CreateTrainingJob"), "training_job_request.json"
            )
        job = estimator.latest_training_job
        log.info("started training job %s", job.name)
        print(f"training_job={job.name}", file=sys.stderr)
        if backend.wait:
            from dogbreed.backends.job_results import attach_training

            return attach_training(cfg, session, job.name)
        return job.describe()


# ----------------------------------------------------------------------------------------------- tuning
def tuning_objective(cfg: DictConfig) -> tuple[str, str]:
    """tune.objective / tune.direction, the one objective of a local study and a SageMaker tuning job."""
    from dogbreed.tuning import TuneConfigError, objective_of

    if cfg.get("tune") is None:
        raise SageMakerSetupError("a tuning job is launched by tune.py (its config holds tune.objective)")
    try:
        objective = objective_of(cfg.tune)
    except TuneConfigError as e:
        raise SageMakerSetupError(str(e)) from None
    if objective.metric not in METRIC_NAMES:
        raise SageMakerSetupError(
            f"tune.objective={objective.metric} is not a metric train.py prints: " + ", ".join(METRIC_NAMES)
        )
    return objective.metric, objective.direction


def static_train_overrides(overrides: Sequence[str], tuned: Any = ()) -> list[str]:
    """tune.py's overrides as every training job of a tuning job takes them: tune-only keys (search=,
    tune.*) and the tuned keys out; each job gets the tuned values from the service."""
    return without_keys(overrides, TUNE_ONLY_KEYS, also=tuned)


def build_tuner(
    cfg: DictConfig,
    overrides: Sequence[str],
    space: Mapping[str, Any],
    session: Any,
    role: str,
    source: Path,
    tuning_name: str | None = None,
):
    """A HyperparameterTuner around the training estimator; tuned keys leave the job's static overrides."""
    from sagemaker.tuner import HyperbandStrategyConfig, HyperparameterTuner, StrategyConfig

    tuning = cfg.backend.tuning
    objective, direction = tuning_objective(cfg)
    params = space if all(isinstance(p, Param) for p in space.values()) else load_search_space(space)
    _sdk()
    ranges = search_space_to_sagemaker(params)
    static = static_train_overrides(overrides, ranges)
    for kind in ("debugger", "profiler"):
        if (cfg.backend.get(kind) or {}).get("enabled"):
            raise SageMakerSetupError(
                f"backend.{kind}.enabled=true: a tuning job's training jobs run no SageMaker {kind} rules;"
                f" use {kind}=on instead (our rules run inside every training job and print rule/* lines)"
            )
    # Each training job gets the static overrides plus one value of every range: check with the lowest.
    point = [format_override(p.name, p.choices[0] if p.choices else p.low) for p in params.values()]
    check_job_overrides([*static, *point], "every training job of the tuning job")
    estimator = build_estimator(cfg, static, session, role, source, checkpoint_name=tuning_name)
    strategy_config, early_stopping = None, tuning.early_stopping
    if tuning.strategy == "Hyperband":
        strategy_config = StrategyConfig(
            HyperbandStrategyConfig(
                min_resource=int(tuning.hyperband.min_resource),
                max_resource=int(tuning.hyperband.max_resource),
            )
        )
        early_stopping = "Off"  # Hyperband's own early stopping replaces SageMaker's
    elif tuning.strategy not in ("Bayesian", "Random"):
        raise SageMakerSetupError(
            f"backend.tuning.strategy must be Bayesian, Random or Hyperband: {tuning.strategy}"
        )
    return HyperparameterTuner(
        estimator,
        objective_metric_name=objective,
        hyperparameter_ranges=ranges,
        metric_definitions=metric_definitions(),
        strategy=tuning.strategy,
        strategy_config=strategy_config,
        objective_type=direction.capitalize(),
        max_jobs=int(tuning.max_jobs),
        max_parallel_jobs=int(tuning.max_parallel_jobs),
        early_stopping_type=early_stopping,
        base_tuning_job_name=_tuning_job_prefix(cfg.backend.base_job_name),
        tags=[
            {"Key": str(k), "Value": str(v)}
            for k, v in {**estimator_tags(estimator), **(cfg.backend.get("tags") or {})}.items()
        ],
    )


def estimator_tags(estimator: Any) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in (estimator.tags or [])}


def _tuning_job_prefix(name: str) -> str:
    return name[:20]  # the SDK appends a timestamp; tuning job names are capped at 32 characters


def launch_tuning(cfg: DictConfig, overrides: Sequence[str], space: Mapping[str, Any]) -> dict:
    """Start (or print, with backend.dry_run) the tuning job; with backend.wait, follow it to the end and
    bring the best job's values and files into the run directory (see `attach_tuning`)."""
    backend = cfg.backend
    with aws_errors():
        dry_run, session, role, inputs = _prepare_job(cfg)
        name = job_name_for(_tuning_job_prefix(backend.base_job_name), tuning=True)
        with _staged_source(cfg) as source_dir:
            tuner = build_tuner(cfg, overrides, space, session, role, source_dir, tuning_name=name)
            tuner.fit(inputs, job_name=name, wait=False)
        if dry_run is not None:
            return show_request(
                cfg.run_dir, dry_run.request("CreateHyperParameterTuningJob"), "tuning_job_request.json"
            )
        print(f"tuning_job={name}", file=sys.stderr)
        if backend.wait:
            from dogbreed.backends.job_results import attach_tuning

            return attach_tuning(cfg, session, name)
        return session.sagemaker_client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)


def attach(cfg: DictConfig, name: str, kind: str) -> dict:
    """`attach=<job name>`: follow a training or tuning job (backend.wait) and download its results."""
    from dogbreed.backends.job_results import attach_training, attach_tuning

    with aws_errors():
        session = make_session(cfg.backend, bucket_required=False)
        return (attach_tuning if kind == "tuning" else attach_training)(cfg, session, name)
