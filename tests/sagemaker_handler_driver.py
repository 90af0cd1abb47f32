"""Drive the real SageMaker PyTorch inference handler service in this process, as TorchServe would.

    PYTHONPATH=<model_dir>/code python sagemaker_handler_driver.py <model_dir> <requests.json>

requests.json: [{"body_file", "content_type", "accept"}, ...]. Prints one JSON object: where dogbreed was
imported from and, per request, the status, response content type and body the toolkit produced.
Run in a subprocess so that `dogbreed` comes from code/ of the model, as it does in the container.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


class RequestProcessor:
    def __init__(self, headers: dict[str, str]):
        self.headers = headers

    def get_request_properties(self) -> dict[str, str]:
        return self.headers


class Context:
    """The parts of TorchServe's context that the inference toolkit reads and writes."""

    def __init__(self, model_dir: str, headers: dict[str, str]):
        self.system_properties = {"model_dir": model_dir, "gpu_id": None}
        self.request_processor = [RequestProcessor(headers)]
        self.model_name = "model"
        self.status: tuple[int, str] = (200, "OK")
        self.content_type: str | None = None

    def set_response_content_type(self, index: int, content_type: str) -> None:
        self.content_type = content_type

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        self.status = (code, phrase)


def main(model_dir: str, requests_file: str) -> None:
    from sagemaker_pytorch_serving_container.handler_service import HandlerService

    import dogbreed

    service = HandlerService()
    service.initialize(Context(model_dir, {}))  # once per worker, as TorchServe does: runs model_fn
    results = []
    for spec in json.loads(Path(requests_file).read_text()):
        headers = {"Content-Type": spec["content_type"]}
        if spec.get("accept"):
            headers["Accept"] = spec["accept"]
        context = Context(model_dir, headers)
        (body,) = service.handle([{"body": Path(spec["body_file"]).read_bytes()}], context)
        results.append(
            {
                "status": context.status[0],
                "content_type": context.content_type,
                "body": body if isinstance(body, str) else body.decode(),
            }
        )
    print(json.dumps({"dogbreed_file": dogbreed.__file__, "results": results}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
