"""python train.py backend=local|sagemaker [experiment=smoke] [overrides]: train, test, export."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    if cfg.backend.name == "local":
        from dogbreed.training import fit

        metrics = fit(cfg)
        return metrics.get("val/loss")
    raise ValueError(f"backend={cfg.backend.name} is not supported yet")


if __name__ == "__main__":
    main()
