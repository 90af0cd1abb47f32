"""The AWS region, read as AWS's own tools read it, for every client the project makes.

The AWS CLI v2 and the other SDKs take `AWS_REGION`, then `AWS_DEFAULT_REGION`, then the profile's
`region` in the config file (`AWS_CONFIG_FILE`, `AWS_PROFILE`); boto3 alone skips `AWS_REGION`. Clients
made here take `aws_region()`, so an `export AWS_REGION=...` reaches them all.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from dogbreed.config.errors import UserError

SET_REGION = (
    "export AWS_REGION=<region> (or AWS_DEFAULT_REGION, or region = <region> in the AWS_PROFILE's config)"
)


class NoRegionError(UserError, RuntimeError):
    """No AWS region anywhere a client looks for one; the message says how to set one."""


def aws_region(environ: Mapping[str, str] = os.environ) -> str | None:
    """AWS_REGION, else what boto3 finds (AWS_DEFAULT_REGION, the profile's region), else None."""
    if environ.get("AWS_REGION"):
        return environ["AWS_REGION"]
    import boto3  # an optional dependency: only callers that talk to AWS get here

    return boto3.Session().region_name


def require_aws_region(what: str, environ: Mapping[str, str] = os.environ) -> str:
    """aws_region(), or a NoRegionError naming `what` needs it and how to set it."""
    region = aws_region(environ)
    if not region:
        raise NoRegionError(f"{what} needs an AWS region: {SET_REGION}")
    return region
