"""python serve/deploy.py backend=local|sagemaker [model_dir=runs/train/<run>/model | model_data=s3://...]

backend=local serves the exported model on 127.0.0.1:8080 (GET /ping, POST /invocations).
backend=sagemaker creates an endpoint running the same handler, real-time or serverless (teardown=true
endpoint_name=<name> deletes it), or with transform.input=s3://... transform.output=s3://... a batch transform
job over an S3 folder of images; backend.dry_run=true prints the requests and sends nothing. With
endpoint.instance_type=local (SageMaker's local mode) the SDK serves it from endpoint.image_uri on this
machine, on server.port.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from dogbreed.config.errors import ConfigValueError, exit_on_user_error
from dogbreed.modeldir.format import model_dir_problem


@hydra.main(version_base="1.3", config_path="../conf", config_name="deploy")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    if cfg.backend.name == "local":
        from dogbreed.serving.server import serve_local

        if not cfg.get("model_dir"):
            raise ConfigValueError("backend=local needs model_dir=runs/train/<run>/model")
        why = model_dir_problem(Path(cfg.model_dir).expanduser())
        if why:
            raise ConfigValueError(
                f"model_dir={cfg.model_dir} {why}: it is not an exported model; "
                "pass a run's model folder, e.g. model_dir=runs/train/<run>/model"
            )
        serve_local(cfg)
        return
    if cfg.backend.name == "sagemaker":
        from dogbreed.sagemaker.endpoint import deploy_endpoint, teardown_endpoint
        from dogbreed.sagemaker.endpoint_local import deploy_local_endpoint
        from dogbreed.sagemaker.local_mode import is_local

        # A SageMakerSetupError (no credentials, AWS refusing, no model) is one `error:` line, exit 2.
        if is_local(cfg.endpoint.instance_type):  # SageMaker's local mode: served from the image here
            deploy_local_endpoint(cfg)
        elif cfg.teardown:
            teardown_endpoint(cfg)
        elif cfg.transform.input:
            from dogbreed.sagemaker.batch_transform import run_batch_transform

            run_batch_transform(cfg)
        else:
            deploy_endpoint(cfg)
        return
    raise ValueError(f"backend={cfg.backend.name} is not supported by deploy.py (use local or sagemaker)")


if __name__ == "__main__":
    import sys

    from dogbreed.config.composition import exit_on_composition_error

    exit_on_composition_error(Path(__file__).resolve().parent.parent / "conf", "deploy", sys.argv[1:])
    main()
