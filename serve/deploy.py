"""python serve/deploy.py backend=local model_dir=runs/train/<run>/model [server.port=8081 ...]

backend=local serves the exported model on 127.0.0.1:8080 (GET /ping, POST /invocations).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="../conf", config_name="deploy")
def main(cfg: DictConfig) -> None:
    if cfg.backend.name == "local":
        from dogbreed.serving.server import serve_local

        serve_local(cfg)
        return
    raise ValueError(f"backend={cfg.backend.name} is not supported by deploy.py yet (use backend=local)")


if __name__ == "__main__":
    main()
