"""SageMaker endpoints for the exported model (SDK v2): deploy and tear down, real-time or serverless.

`deploy_endpoint(cfg)` uploads the model packed with code/ (endpoint_model.py), creates the model, endpoint
config and endpoint through `PyTorchModel.deploy` (on instances, or serverless with endpoint.serverless),
waits for InService, and optionally registers Application Auto Scaling on the variant
(endpoint_autoscaling.py). `teardown_endpoint(cfg)` removes all of it again. `breed_model` is the one
PyTorchModel of both endpoints and batch transforms (batch_transform.py). With backend.dry_run the requests
are printed and kept in the run directory, and nothing is sent (the same botocore-level dry run as the
training job's). Sessions, role and instance checks are session.py's.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

from omegaconf import DictConfig

from dogbreed.config.aws import require_aws_region
from dogbreed.config.schema import check_deploy_config
from dogbreed.modeldir.archive import CODE_DIR, ENTRY_POINT
from dogbreed.sagemaker.dry_run import DryRun, sdk_log_of, show_request
from dogbreed.sagemaker.endpoint_autoscaling import (
    VARIANT,
    AutoscalingSettings,
    autoscaling_settings,
    register_autoscaling,
    registered_answers,
    remove_autoscaling,
)
from dogbreed.sagemaker.endpoint_model import model_source, stage_model
from dogbreed.sagemaker.session import (
    SageMakerSetupError,
    check_instance_type,
    make_session,
    resolve_role,
    sdk,
    sdk_config,
)

log = logging.getLogger(__name__)

# Where the PyTorch inference container finds code/ of model.tar.gz; the SDK sets the same after a repack.
CONTAINER_CODE_DIR = f"/opt/ml/model/{CODE_DIR}"
ENDPOINT_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


class EndpointError(SageMakerSetupError):
    """The endpoint was created but did not come up; the message says why and how to remove it."""


# --------------------------------------------------------------------------------------------- checks
def endpoint_name_of(cfg: DictConfig) -> str:
    from sagemaker.utils import name_from_base

    name = cfg.get("endpoint_name") or name_from_base(str(cfg.endpoint.base_name))
    if not ENDPOINT_NAME.match(name):
        raise SageMakerSetupError(
            f"endpoint name {name!r} is not valid: at most 63 letters, digits and hyphens, no hyphen first"
        )
    return name


def image_uri(endpoint: DictConfig, session: Any, instance_type: str | None) -> str:
    """endpoint.image_uri, else the PyTorch inference image for this region and instance (CPU or GPU
    build; instance_type None: serverless, CPU)."""
    from sagemaker import image_uris

    if endpoint.get("image_uri"):
        return str(endpoint.image_uri)

    try:
        return image_uris.retrieve(
            "pytorch",
            region=session.boto_region_name,
            version=str(endpoint.framework_version),
            py_version=str(endpoint.py_version),
            instance_type=instance_type,
            image_scope="inference",
            serverless_inference_config=None if instance_type else serverless_config(endpoint),
        )
    except ValueError as e:
        message = " ".join(str(e).split())
        raise SageMakerSetupError(f"endpoint.framework_version/py_version: {message}") from None


def _describe(call: Any, **kwargs: Any) -> dict | None:
    """A Describe* answer, or None when SageMaker finds no such resource."""
    from botocore.exceptions import ClientError

    try:
        return call(**kwargs)
    except ClientError as e:
        if "Could not find" in e.response.get("Error", {}).get("Message", ""):
            return None
        raise


def check_name_free(session: Any, name: str, kinds: tuple[str, ...], fix: str) -> None:
    """Refuse a name a resource of `kinds` already has: the SDK would silently reuse a leftover model of the
    same name. Checked before uploading; `fix` says what to do instead."""
    client = session.sagemaker_client
    calls = {
        "endpoint": (client.describe_endpoint, "EndpointName"),
        "endpoint config": (client.describe_endpoint_config, "EndpointConfigName"),
        "model": (client.describe_model, "ModelName"),
        "transform job": (client.describe_transform_job, "TransformJobName"),
    }
    for kind in kinds:
        call, key = calls[kind]
        if _describe(call, **{key: name}) is not None:
            raise SageMakerSetupError(f"a SageMaker {kind} named {name} already exists: {fix}")


def serverless_config(endpoint: DictConfig) -> Any:
    """endpoint.serverless as the SDK's ServerlessInferenceConfig; None when it is off."""
    serverless = endpoint.get("serverless")
    if serverless is None or not serverless.get("enabled"):
        return None
    sdk()
    from sagemaker.serverless import ServerlessInferenceConfig

    return ServerlessInferenceConfig(
        memory_size_in_mb=int(serverless.memory_size_mb), max_concurrency=int(serverless.max_concurrency)
    )


def _check_serverless(endpoint: DictConfig, scaling: AutoscalingSettings | None) -> None:
    if scaling is not None:
        raise SageMakerSetupError(
            "endpoint.serverless.enabled=true with endpoint.autoscaling.enabled=true: a serverless endpoint "
            "scales itself (up to endpoint.serverless.max_concurrency); turn one of them off"
        )


def endpoint_environment(endpoint: DictConfig) -> dict[str, str]:
    """The model's environment: which script the container runs, and the handler's DOGBREED_* settings."""
    env = {str(k): str(v) for k, v in (endpoint.get("environment") or {}).items() if v is not None}
    # model.tar.gz already holds code/inference.py: name it here instead of letting the SDK repack it.
    env.update({"SAGEMAKER_PROGRAM": ENTRY_POINT, "SAGEMAKER_SUBMIT_DIRECTORY": CONTAINER_CODE_DIR})
    return env


# ---------------------------------------------------------------------------------------------- deploy
def deploy_endpoint(cfg: DictConfig) -> dict:
    """Create (or print, with backend.dry_run) the model, endpoint config, endpoint and autoscaling.

    Returns DescribeEndpoint's answer, or with a dry run the list of requests.
    """
    check_deploy_config(cfg)
    endpoint = cfg.endpoint
    source = model_source(cfg)
    scaling = autoscaling_settings(endpoint)
    serverless = serverless_config(endpoint)
    if serverless is not None:
        _check_serverless(endpoint, scaling)
    dry_run = DryRun() if cfg.backend.dry_run else None
    session = make_session(cfg.backend, dry_run)
    role = resolve_role(cfg.backend, dry_run is not None)
    instance_type = None if serverless is not None else str(endpoint.instance_type)
    if instance_type is not None:
        instance_shape = "ProductionVariantInstanceType"  # botocore's list of the types an endpoint takes
        check_instance_type(session, instance_type, instance_shape, "endpoint.instance_type", "ml.m5.large")
    image = image_uri(endpoint, session, instance_type)
    name = endpoint_name_of(cfg)
    if dry_run is None:
        teardown = f"python serve/deploy.py backend=sagemaker teardown=true endpoint_name={name}"
        fix = f"choose another endpoint_name or remove it with {teardown}"
        check_name_free(session, name, ("endpoint", "endpoint config", "model"), fix)
    model_data = stage_model(cfg, session, name, source, dry_run is not None)
    shape = (
        f"serverless, {serverless.memory_size_in_mb} MB, "
        f"at most {serverless.max_concurrency} requests at once"
        if serverless is not None
        else f"{endpoint.initial_instance_count} x {endpoint.instance_type}"
    )
    log.info("%s endpoint %s (%s)", "dry run, not sent: would create" if dry_run else "creating", name, shape)
    with sdk_log_of(dry_run):
        create_endpoint(cfg, session, role, image, model_data, name)
    if dry_run is None and _wait(endpoint, scaling):
        wait_until_in_service(session.sagemaker_client, name)
    if scaling is not None:
        register_autoscaling(session, name, scaling)
    if dry_run is not None:
        return show_request(cfg.run_dir, dry_run.changes(), "endpoint_requests.json")
    described = session.sagemaker_client.describe_endpoint(EndpointName=name)
    print(usage(name, session.boto_region_name, described["EndpointStatus"]), flush=True)
    return described


def _wait(endpoint: DictConfig, scaling: AutoscalingSettings | None) -> bool:
    if scaling is not None and not endpoint.wait:
        log.info("endpoint.wait=false ignored: autoscaling can only be registered on an InService endpoint")
    return bool(endpoint.wait) or scaling is not None


def wait_until_in_service(client: Any, name: str) -> None:
    """Block until the endpoint is InService; a failed endpoint becomes a one-line error with its reason."""
    from botocore.exceptions import WaiterError

    log.info("waiting for endpoint %s to be InService (usually 5 to 10 minutes)", name)
    # botocore's waiter asks first and sleeps between asks; the SDK's own wait sleeps 30 s before asking.
    try:
        client.get_waiter("endpoint_in_service").wait(EndpointName=name)
    except WaiterError:
        reason = client.describe_endpoint(EndpointName=name).get("FailureReason") or "no reason given"
        raise EndpointError(
            f"endpoint {name} did not come up: {' '.join(reason.split())} (remove it with"
            f" python serve/deploy.py backend=sagemaker teardown=true endpoint_name={name})"
        ) from None


def breed_model(
    cfg: DictConfig,
    session: Any,
    role: str,
    image: str,
    model_data: str,
    name: str,
    code_location: str | None = None,
) -> Any:
    """The SDK's PyTorchModel of the packed archive, named `name`: what endpoints and transforms run.

    `code_location`: where the SDK would put code it uploads (none here); null: the session's bucket."""
    sdk()
    from sagemaker.pytorch import PyTorchModel

    endpoint = cfg.endpoint
    return PyTorchModel(
        model_data=model_data,
        role=role,
        # No entry_point: the SDK would download, repack and re-upload an archive that has code/ already.
        entry_point=None,
        image_uri=image,
        framework_version=str(endpoint.framework_version),
        py_version=str(endpoint.py_version),
        env=endpoint_environment(endpoint),
        name=name,
        code_location=code_location,
        sagemaker_session=session,
        # The SDK's PyTorchPredictor sends and accepts application/x-npy, which the handler answers 406.
        predictor_cls=breed_predictor,
    )


def resource_tags(cfg: DictConfig) -> list[dict[str, str]] | None:
    tags = [{"Key": str(k), "Value": str(v)} for k, v in (cfg.backend.get("tags") or {}).items()]
    return tags or None


def create_endpoint(
    cfg: DictConfig,
    session: Any,
    role: str,
    image: str,
    model_data: str,
    name: str,
    code_location: str | None = None,
) -> None:
    """CreateModel, CreateEndpointConfig and CreateEndpoint, all named `name`, through the SDK."""
    endpoint = cfg.endpoint
    model = breed_model(cfg, session, role, image, model_data, name, code_location)
    serverless = serverless_config(endpoint)
    if serverless is not None:
        instances: dict[str, Any] = {"serverless_inference_config": serverless}
    else:
        instances = {
            "initial_instance_count": int(endpoint.initial_instance_count),
            "instance_type": str(endpoint.instance_type),
        }
    model.deploy(
        **instances,
        endpoint_name=name,
        tags=resource_tags(cfg),
        wait=False,  # wait_until_in_service waits, without the SDK's fixed 30 s first sleep
    )


def breed_predictor(endpoint_name: str, sagemaker_session: Any = None, **kwargs: Any) -> Any:
    """An SDK Predictor for the endpoint: sends image bytes (image/jpeg; PNG and others decode the same way)
    and reads the JSON answer; `breed_predictor(name).predict(open("dog.jpg", "rb").read())`."""
    sdk()
    from sagemaker.deserializers import JSONDeserializer
    from sagemaker.predictor import Predictor
    from sagemaker.serializers import IdentitySerializer

    kwargs.pop("serializer", None)
    kwargs.pop("deserializer", None)
    if sagemaker_session is None:  # the SDK's own default session reads no AWS_REGION
        sagemaker_session = runtime_session()
    return Predictor(
        endpoint_name,
        sagemaker_session=sagemaker_session,
        serializer=IdentitySerializer("image/jpeg"),
        deserializer=JSONDeserializer(),
        **kwargs,
    )


def runtime_session() -> Any:
    """A SageMaker session in the region `aws_region` reads (AWS_REGION first), for calling endpoints."""
    import boto3

    region = require_aws_region("breed_predictor (a SageMaker endpoint's client)")
    return sdk().Session(boto_session=boto3.Session(region_name=region), sagemaker_config=sdk_config())


def usage(name: str, region: str, status: str) -> str:
    """How to call the endpoint with raw image bytes, and how to remove it."""
    return "\n".join(
        [
            f"endpoint={name} ({status}, region {region})",
            "query it with an image's raw bytes:",
            f"  aws sagemaker-runtime invoke-endpoint --region {region} --endpoint-name {name}"
            " --content-type image/jpeg --accept application/json --body fileb://dog.jpg out.json",
            f"  AWS_REGION={region} python serve/predict.py dog.jpg --endpoint {name}",
            "delete it (endpoint, endpoint config, model, autoscaling):",
            f"  python serve/deploy.py backend=sagemaker teardown=true endpoint_name={name}",
        ]
    )


# -------------------------------------------------------------------------------------------- teardown
def teardown_endpoint(cfg: DictConfig) -> list[str] | list[dict]:
    """Delete the endpoint, its endpoint config, its model(s) and its autoscaling registration.

    Returns what was deleted; with backend.dry_run, the Delete* requests (assuming the endpoint is laid out
    as deploy_endpoint makes it with this config).
    """
    name = cfg.get("endpoint_name")
    if not name:
        raise SageMakerSetupError(
            "teardown=true needs endpoint_name=<name> (aws sagemaker list-endpoints lists them)"
        )
    dry_run = None
    if cfg.backend.dry_run:
        dry_run = DryRun(answers=teardown_answers(name, autoscaling_settings(cfg.endpoint) is not None))
    session = make_session(cfg.backend, dry_run, bucket_required=False)
    client = session.sagemaker_client
    described = _describe(client.describe_endpoint, EndpointName=name)
    if described is None:
        raise SageMakerSetupError(
            f"no endpoint named {name} in {session.boto_region_name}: nothing to tear down"
        )
    config_name = described["EndpointConfigName"]
    variants = [v["VariantName"] for v in described.get("ProductionVariants") or []] or [VARIANT]
    config = _describe(client.describe_endpoint_config, EndpointConfigName=config_name)
    models = list(dict.fromkeys(v["ModelName"] for v in (config or {}).get("ProductionVariants", [])))

    with sdk_log_of(dry_run):
        deleted = [f"autoscaling:{target}" for target in remove_autoscaling(session, name, variants)]
        session.delete_endpoint(name)
        deleted.append(f"endpoint:{name}")
        if config is not None:
            session.delete_endpoint_config(config_name)
            deleted.append(f"endpoint-config:{config_name}")
        for model in models:
            if _describe(client.describe_model, ModelName=model) is not None:
                session.delete_model(model)
                deleted.append(f"model:{model}")
    if dry_run is not None:
        return show_request(cfg.run_dir, dry_run.changes(), "teardown_requests.json")
    print("deleted " + ", ".join(deleted), file=sys.stderr, flush=True)
    return deleted


def teardown_answers(name: str, autoscaled: bool) -> dict[str, dict]:
    """Dry-run answers to teardown's Describe calls: the endpoint as deploy_endpoint makes it."""
    variants = [{"VariantName": VARIANT, "ModelName": name}]
    return {
        "DescribeEndpoint": {
            "EndpointName": name,
            "EndpointConfigName": name,
            "ProductionVariants": variants,
        },
        "DescribeEndpointConfig": {"EndpointConfigName": name, "ProductionVariants": variants},
        "DescribeModel": {"ModelName": name},
        **registered_answers(name, autoscaled),
    }
