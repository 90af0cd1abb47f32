"""Drive the real SageMaker PyTorch inference handler service in this process, as TorchServe would.

    PYTHONPATH=<model_dir>/code python sagemaker_handler_driver.py <model_dir> <requests.json>

requests.json: [{"body_file", "content_type", "accept"}, ...]. Prints one JSON object: where dogbreed was
imported from, the engine model_fn loaded and, per request, the time handle() took, the status, response
content type and body the toolkit produced.
Run in a subprocess so that `dogbreed` comes from code/ of the model, as it does in the container.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


class RequestProcessor:
    """TorchServe's per-request half of the context (ts/protocol/otf_message_handler.RequestProcessor):
    the request's headers in, the response's status and headers out."""

    def __init__(self, headers: dict[str, str]):
        self.headers = headers
        self.status: tuple[int, str] = (200, "OK")
        self.response_headers: dict[str, str] = {}

    def get_request_properties(self) -> dict[str, str]:
        return self.headers

    def report_status(self, code: int, reason_phrase: str | None = None) -> None:
        self.status = (code, reason_phrase or "")

    def add_response_property(self, key: str, value: str) -> None:
        self.response_headers[key] = value


class Context:
    """The parts of TorchServe's ts/context.Context that the inference toolkit reads and writes.

    As in TorchServe (ts/service.Service.predict), one context lives as long as the worker: each batch
    replaces its `request_processor` list, and status and content type go to that batch's processors."""

    def __init__(self, model_dir: str):
        self.system_properties = {"model_dir": model_dir, "gpu_id": None}
        self.request_processor: list[RequestProcessor] = []
        self.model_name = "model"

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.request_processor[idx].add_response_property("content-type", value)

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        self.request_processor[idx].report_status(code, phrase)


def main(model_dir: str, requests_file: str) -> None:
    from sagemaker_pytorch_serving_container.handler_service import HandlerService

    import dogbreed

    service = HandlerService()
    context = Context(model_dir)
    service.initialize(context)  # once per worker, as TorchServe does: runs model_fn
    results = []
    for spec in json.loads(Path(requests_file).read_text()):
        headers = {"Content-Type": spec["content_type"]}
        if spec.get("accept"):
            headers["Accept"] = spec["accept"]
        processor = RequestProcessor(headers)
        context.request_processor = [processor]
        data = [{"body": Path(spec["body_file"]).read_bytes()}]
        start = time.perf_counter()
        (body,) = service.handle(data, context)
        elapsed_ms = (time.perf_counter() - start) * 1000
        results.append(
            {
                "ms": elapsed_ms,  # the toolkit's handle(): request bytes to the answer's body
                "status": processor.status[0],
                "content_type": processor.response_headers.get("content-type"),
                "body": body if isinstance(body, str) else body.decode(),
            }
        )
    # What model_fn returned: the engine that answered (e.g. "openvino int8" or "torch").
    engine = service._service._model.name
    print(json.dumps({"dogbreed_file": dogbreed.__file__, "engine": engine, "results": results}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
