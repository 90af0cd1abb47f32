"""Application Auto Scaling of a SageMaker endpoint variant: target tracking on invocations per instance.

SageMaker itself has no autoscaling API: the variant's instance count is a scalable target of Application
Auto Scaling (resource `endpoint/<name>/variant/<variant>`, dimension
`sagemaker:variant:DesiredInstanceCount`), and a TargetTrackingScaling policy on the predefined metric
`SageMakerVariantInvocationsPerInstance` (invocations per minute per instance) moves it between the bounds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from dogbreed.sagemaker.session import SageMakerSetupError

log = logging.getLogger(__name__)

VARIANT = "AllTraffic"  # the variant name PyTorchModel.deploy gives the endpoint's only variant
NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
METRIC = "SageMakerVariantInvocationsPerInstance"


@dataclass(frozen=True)
class AutoscalingSettings:
    min_instances: int
    max_instances: int
    target_invocations_per_instance: float
    scale_in_cooldown_s: int
    scale_out_cooldown_s: int


def autoscaling_settings(endpoint: DictConfig) -> AutoscalingSettings | None:
    """endpoint.autoscaling checked before anything is created; None when it is off."""
    scaling = endpoint.get("autoscaling") or {}
    if not scaling.get("enabled"):
        return None
    settings = AutoscalingSettings(
        min_instances=int(scaling.min_instances),
        max_instances=int(scaling.max_instances),
        target_invocations_per_instance=float(scaling.target_invocations_per_instance),
        scale_in_cooldown_s=int(scaling.scale_in_cooldown_s),
        scale_out_cooldown_s=int(scaling.scale_out_cooldown_s),
    )
    if not 1 <= settings.min_instances <= settings.max_instances:
        raise SageMakerSetupError(
            "endpoint.autoscaling needs 1 <= min_instances <= max_instances, got "
            f"min_instances={settings.min_instances} max_instances={settings.max_instances}"
        )
    if settings.target_invocations_per_instance <= 0:
        raise SageMakerSetupError("endpoint.autoscaling.target_invocations_per_instance must be above 0")
    return settings


def resource_id(endpoint_name: str, variant: str = VARIANT) -> str:
    return f"endpoint/{endpoint_name}/variant/{variant}"


def policy_name(endpoint_name: str) -> str:
    return f"{endpoint_name}-invocations-per-instance"


def register_autoscaling(session: Any, endpoint_name: str, settings: AutoscalingSettings) -> None:
    """RegisterScalableTarget + PutScalingPolicy on the endpoint's variant (which must be InService)."""
    client = session.boto_session.client("application-autoscaling")
    target = resource_id(endpoint_name)
    # No RoleARN: Application Auto Scaling uses its service-linked role for SageMaker.
    client.register_scalable_target(
        ServiceNamespace=NAMESPACE,
        ResourceId=target,
        ScalableDimension=DIMENSION,
        MinCapacity=settings.min_instances,
        MaxCapacity=settings.max_instances,
    )
    client.put_scaling_policy(
        PolicyName=policy_name(endpoint_name),
        ServiceNamespace=NAMESPACE,
        ResourceId=target,
        ScalableDimension=DIMENSION,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": settings.target_invocations_per_instance,
            "PredefinedMetricSpecification": {"PredefinedMetricType": METRIC},
            "ScaleInCooldown": settings.scale_in_cooldown_s,
            "ScaleOutCooldown": settings.scale_out_cooldown_s,
        },
    )
    log.info(
        "autoscaling %s between %d and %d instances at %g invocations/instance/minute",
        target,
        settings.min_instances,
        settings.max_instances,
        settings.target_invocations_per_instance,
    )


def remove_autoscaling(session: Any, endpoint_name: str, variants: list[str]) -> list[str]:
    """Delete the scaling policies and deregister the variants' scalable targets; return those removed."""
    client = session.boto_session.client("application-autoscaling")
    ids = [resource_id(endpoint_name, v) for v in variants]
    targets = client.describe_scalable_targets(
        ServiceNamespace=NAMESPACE, ResourceIds=ids, ScalableDimension=DIMENSION
    ).get("ScalableTargets", [])
    removed = []
    for target in targets:
        # Deregistering deletes the target's policies on AWS; deleting them first leaves nothing behind
        # wherever that is not so, and shows them in a dry run.
        policies = client.describe_scaling_policies(
            ServiceNamespace=NAMESPACE, ResourceId=target["ResourceId"], ScalableDimension=DIMENSION
        ).get("ScalingPolicies", [])
        for policy in policies:
            client.delete_scaling_policy(
                PolicyName=policy["PolicyName"],
                ServiceNamespace=NAMESPACE,
                ResourceId=target["ResourceId"],
                ScalableDimension=DIMENSION,
            )
        client.deregister_scalable_target(
            ServiceNamespace=NAMESPACE, ResourceId=target["ResourceId"], ScalableDimension=DIMENSION
        )
        removed.append(target["ResourceId"])
    return removed


def registered_answers(endpoint_name: str, registered: bool) -> dict[str, dict]:
    """Dry-run answers of the Describe calls above, for an endpoint as deploy_endpoint would scale it."""
    target = resource_id(endpoint_name)
    return {
        "DescribeScalableTargets": {
            "ScalableTargets": [{"ResourceId": target, "ScalableDimension": DIMENSION}] if registered else []
        },
        "DescribeScalingPolicies": {
            "ScalingPolicies": [{"PolicyName": policy_name(endpoint_name), "ResourceId": target}]
        },
    }
