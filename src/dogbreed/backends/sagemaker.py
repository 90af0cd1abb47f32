"""SageMaker SDK (v2) sessions, the training job and the tuning job (endpoints: sagemaker_endpoint.py).

`launch_training(cfg, overrides)` packages this project (train.py, conf/, src/, a requirements file) and
starts a PyTorch script-mode job whose entry point is the same train.py; the job's hyperparameters are the
run's Hydra overrides. `dry_run=true` lets the SDK build every request but answers them here, so nothing is
sent or uploaded and no credentials are needed; the CreateTrainingJob request is printed as JSON.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dogbreed.backends.dry_run import DRY_RUN_BUCKET, DRY_RUN_ROLE, DryRun, show_request
from dogbreed.backends.job_spec import (
    PROFILER_REPORT,
    hyperparameters_from_overrides,
    job_rules,
    metric_definitions,
    profiler_report_parameters,
)
from dogbreed.backends.source_bundle import stage_source
from dogbreed.callbacks import METRIC_NAMES
from dogbreed.diagnostics.outcomes import RuleSpec, sagemaker_rule_parameters
from dogbreed.files import write_text_atomic

log = logging.getLogger(__name__)

# Telemetry is an HTTP call outside boto3 that dry runs and tests must not make.
SDK_CONFIG = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}


class SageMakerSetupError(RuntimeError):
    """Something to set before a job can start; the message is one line saying what."""


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
    return sagemaker.Session(boto_session=boto_session, default_bucket=bucket, sagemaker_config=SDK_CONFIG)


def check_backend(backend: DictConfig, session: Any, dry_run: bool) -> str:
    """Validate what AWS would reject late; return the role ARN to use."""
    role = resolve_role(backend, dry_run)
    check_instance_type(session, backend.instance_type, "TrainingInstanceType", "backend.instance_type")
    return role


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
    from dogbreed.data.folders import inspect_layout

    root = Path(cfg.data.root)
    inspect_layout(root)  # a bad local folder stops here, before anything is uploaded
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


def build_estimator(cfg: DictConfig, overrides: Sequence[str], session: Any, role: str, source_dir: Path):
    """The PyTorch script-mode estimator that runs this project's train.py with this run's overrides."""
    from sagemaker.pytorch import PyTorch

    backend = cfg.backend
    bucket = session.default_bucket()
    checkpoint_s3_uri = backend.get("checkpoint_s3_uri")
    if backend.spot and not checkpoint_s3_uri:
        checkpoint_s3_uri = f"s3://{bucket}/{backend.prefix}/checkpoints/{backend.base_job_name}"
    max_wait = (backend.get("max_wait_s") or 2 * backend.max_run_s) if backend.spot else None
    return PyTorch(
        entry_point="train.py",
        source_dir=str(source_dir),
        role=role,
        instance_type=backend.instance_type,
        instance_count=backend.instance_count,
        volume_size=backend.volume_size_gb,
        framework_version=str(backend.framework_version),
        py_version=backend.py_version,
        hyperparameters=hyperparameters_from_overrides(overrides),
        metric_definitions=metric_definitions(),
        base_job_name=backend.base_job_name,
        output_path=f"s3://{bucket}/{backend.prefix}/output",
        code_location=f"s3://{bucket}/{backend.prefix}/code",
        use_spot_instances=bool(backend.spot),
        max_run=backend.max_run_s,
        max_wait=max_wait,
        checkpoint_s3_uri=checkpoint_s3_uri,
        tags=[{"Key": str(k), "Value": str(v)} for k, v in (backend.get("tags") or {}).items()],
        environment={str(k): str(v) for k, v in (backend.get("environment") or {}).items()},
        sagemaker_session=session,
        **debugger_settings(cfg),
    )


@contextmanager
def _staged_source() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="dogbreed-source-") as tmp:
        yield stage_source(Path(tmp) / "source")


def _prepare_job(cfg: DictConfig) -> tuple[DryRun | None, Any, str, Any]:
    """What every job needs first: the dry-run recorder (if any), a session, the checked role, the data."""
    dry_run = DryRun() if cfg.backend.dry_run else None
    session = make_session(cfg.backend, dry_run)
    role = check_backend(cfg.backend, session, dry_run is not None)
    return dry_run, session, role, data_inputs(cfg, session, dry_run is not None)


def launch_training(cfg: DictConfig, overrides: Sequence[str]) -> dict:
    """Start (or, with backend.dry_run, print) the training job; return the CreateTrainingJob request."""
    backend = cfg.backend
    dry_run, session, role, inputs = _prepare_job(cfg)
    with _staged_source() as source_dir:
        estimator = build_estimator(cfg, overrides, session, role, source_dir)
        estimator.fit(inputs, wait=bool(backend.wait) and dry_run is None, logs="All")
    if dry_run is not None:
        return show_request(cfg.run_dir, dry_run.request("CreateTrainingJob"), "training_job_request.json")
    job = estimator.latest_training_job
    log.info("started training job %s", job.name)
    print(f"training_job={job.name}", file=sys.stderr)
    return job.describe()


# ----------------------------------------------------------------------------------------------- tuning
def search_space_to_sagemaker(space: dict[str, dict]) -> dict[str, Any]:
    """{override key: {type: float|int|categorical, low, high, log, choices}} -> SageMaker ranges."""
    _sdk()
    from sagemaker.tuner import CategoricalParameter, ContinuousParameter, IntegerParameter

    ranges: dict[str, Any] = {}
    for key, spec in space.items():
        spec = dict(spec or {})
        kind = spec.get("type")
        try:
            if kind == "categorical":
                ranges[key] = CategoricalParameter([_hyperparameter_text(c) for c in spec["choices"]])
            elif kind in ("float", "int"):
                low, high = spec["low"], spec["high"]
                if not low < high:
                    raise ValueError(f"low={low} must be below high={high}")
                scaling = "Logarithmic" if spec.get("log") else "Linear"
                parameter = ContinuousParameter if kind == "float" else IntegerParameter
                ranges[key] = parameter(low, high, scaling_type=scaling)
            else:
                raise ValueError(f"type must be float, int or categorical, got {kind!r}")
        except (KeyError, ValueError, TypeError) as e:
            missing = f"missing {e}" if isinstance(e, KeyError) else str(e)
            raise SageMakerSetupError(f"search space entry {key}: {missing}") from None
    return ranges


def _hyperparameter_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def build_tuner(
    cfg: DictConfig, overrides: Sequence[str], space: dict, session: Any, role: str, source: Path
):
    """A HyperparameterTuner around the training estimator; tuned keys leave the job's static overrides."""
    from sagemaker.tuner import HyperbandStrategyConfig, HyperparameterTuner, StrategyConfig

    tuning = cfg.backend.tuning
    if tuning.objective not in METRIC_NAMES:
        raise SageMakerSetupError(
            f"backend.tuning.objective={tuning.objective} is not a metric train.py prints: "
            + ", ".join(METRIC_NAMES)
        )
    if tuning.direction not in ("minimize", "maximize"):
        raise SageMakerSetupError(
            f"backend.tuning.direction must be minimize or maximize, got {tuning.direction}"
        )
    ranges = search_space_to_sagemaker(space)
    static = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in ranges]
    estimator = build_estimator(cfg, static, session, role, source)
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
        objective_metric_name=tuning.objective,
        hyperparameter_ranges=ranges,
        metric_definitions=metric_definitions(),
        strategy=tuning.strategy,
        strategy_config=strategy_config,
        objective_type=tuning.direction.capitalize(),
        max_jobs=int(tuning.max_jobs),
        max_parallel_jobs=int(tuning.max_parallel_jobs),
        early_stopping_type=early_stopping,
        base_tuning_job_name=_tuning_job_prefix(cfg.backend.base_job_name),
        tags=[{"Key": str(k), "Value": str(v)} for k, v in (cfg.backend.get("tags") or {}).items()],
    )


def _tuning_job_prefix(name: str) -> str:
    return name[:20]  # the SDK appends a timestamp; tuning job names are capped at 32 characters


def best_params(session: Any, tuning_job_name: str) -> tuple[str, list[str]]:
    """The best training job of a finished tuning job and its tuned values as Hydra overrides."""
    described = session.sagemaker_client.describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=tuning_job_name
    )
    best = described.get("BestTrainingJob")
    if not best:
        raise SageMakerSetupError(f"tuning job {tuning_job_name} has no best training job (yet)")
    overrides = [f"{key}={_decoded(value)}" for key, value in sorted(best["TunedHyperParameters"].items())]
    return best["TrainingJobName"], overrides


def _decoded(value: str) -> str:
    try:  # the SDK JSON-encodes categorical values for framework estimators
        decoded = json.loads(value)
    except json.JSONDecodeError:
        return value
    return decoded if isinstance(decoded, str) else value


def write_best_params(path: Path, job_name: str, overrides: Sequence[str]) -> Path:
    """best_params.yaml: a YAML list of Hydra overrides (`python train.py $(...)` or merged by tune.py)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(path, f"# best training job: {job_name}\n" + OmegaConf.to_yaml(list(overrides)))


def launch_tuning(cfg: DictConfig, overrides: Sequence[str], space: dict) -> dict:
    """Start (or print, with backend.dry_run) the tuning job; after backend.wait, write best_params.yaml."""
    backend = cfg.backend
    dry_run, session, role, inputs = _prepare_job(cfg)
    with _staged_source() as source_dir:
        tuner = build_tuner(cfg, overrides, space, session, role, source_dir)
        tuner.fit(inputs, wait=False)
    if dry_run is not None:
        return show_request(
            cfg.run_dir, dry_run.request("CreateHyperParameterTuningJob"), "tuning_job_request.json"
        )
    name = tuner.latest_tuning_job.name
    print(f"tuning_job={name}", file=sys.stderr)
    if backend.wait:
        tuner.wait()
        job, best = best_params(session, name)
        path = write_best_params(Path(cfg.run_dir) / backend.tuning.best_params_file, job, best)
        log.info("best training job %s: %s (written to %s)", job, " ".join(best), path)
    return session.sagemaker_client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
