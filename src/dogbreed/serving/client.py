"""Ask a running endpoint for the top-k breeds of image files: a local server URL or a SageMaker endpoint."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from dogbreed.config.aws import require_aws_region

DEFAULT_ENDPOINT = "http://127.0.0.1:8080"


class EndpointError(RuntimeError):
    """The endpoint refused or failed a request; the message names the file and the server's reason."""


def content_type_of(data: bytes) -> str:
    """From the file's magic bytes, not its name (a PNG saved as .jpg is common)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    return "application/x-image"


def invoke_http(url: str, body: bytes, content_type: str, accept: str, timeout: float = 60.0) -> dict:
    base = url.rstrip("/")
    target = base if base.endswith("/invocations") else f"{base}/invocations"
    request = urllib.request.Request(
        target, data=body, method="POST", headers={"Content-Type": content_type, "Accept": accept}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        try:
            detail = json.loads(detail)["message"]
        except (ValueError, KeyError, TypeError):
            pass
        raise EndpointError(f"{target} answered {exc.code}: {detail}") from exc


def invoke_sagemaker(endpoint_name: str, body: bytes, content_type: str, accept: str) -> dict:
    """InvokeEndpoint on a deployed SageMaker endpoint (boto3's credentials, the region as `aws_region`)."""
    try:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        raise EndpointError(
            f"calling SageMaker endpoint {endpoint_name} needs boto3 (pip install boto3)"
        ) from None
    region = require_aws_region(f"calling SageMaker endpoint {endpoint_name}")
    runtime = boto3.client("sagemaker-runtime", region_name=region)
    try:
        response = runtime.invoke_endpoint(
            EndpointName=endpoint_name, Body=body, ContentType=content_type, Accept=accept
        )
    except (BotoCoreError, ClientError) as exc:
        raise EndpointError(f"SageMaker endpoint {endpoint_name}: {exc}") from exc
    return json.loads(response["Body"].read())


def predict_files(
    paths: list[str | Path], endpoint: str = DEFAULT_ENDPOINT, topk: int = 3, timeout: float = 60.0
) -> dict[str, list[dict]]:
    """{file: [{"index", "class_name", "label", "probability"}, ...]} for each file, one request each.

    `endpoint` is an http(s) URL of a server with SageMaker's contract, or a SageMaker endpoint name.
    """
    accept = f"application/json; topk={topk}"
    results = {}
    for path in paths:
        body = Path(path).read_bytes()
        content_type = content_type_of(body)
        try:
            if endpoint.startswith(("http://", "https://")):
                answer = invoke_http(endpoint, body, content_type, accept, timeout)
            else:
                answer = invoke_sagemaker(endpoint, body, content_type, accept)
        except EndpointError as exc:
            raise EndpointError(f"{path}: {exc}") from exc
        results[str(path)] = answer["predictions"][0]["topk"]
    return results


def format_predictions(results: dict[str, list[dict]]) -> str:
    lines = []
    for path, top in results.items():
        lines.append(path)
        lines += [f"  {p['probability']:7.2%}  {p['label']}  (index {p['index']})" for p in top]
    return "\n".join(lines)
