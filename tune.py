"""python tune.py backend=local [search=default] [tune.n_trials=20] [overrides]: an Optuna study."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from dogbreed.config.errors import exit_on_user_error
from dogbreed.config.schema import check_train_config
from dogbreed.tracking.manifest import hydra_overrides

log = logging.getLogger("tune")


@hydra.main(version_base="1.3", config_path="conf", config_name="tune")
@exit_on_user_error
def main(cfg: DictConfig) -> float | None:
    check_train_config(cfg)  # the values every trial shares, before a study is created
    if cfg.backend.name == "sagemaker":
        # The same conf/search file becomes the tuning job's parameter ranges.
        from omegaconf import OmegaConf

        from dogbreed.sagemaker.training_job import attach
        from dogbreed.sagemaker.tuning_job import launch_tuning
        from dogbreed.tuning.search_space import load_search_space

        if cfg.get("attach"):  # an existing tuning job: its best values and files
            attach(cfg, str(cfg.attach), "tuning")
        else:  # tune.objective/direction decide the tuning job's objective, as a local study's
            space = load_search_space(OmegaConf.to_container(cfg.search, resolve=True), source="search")
            launch_tuning(cfg, hydra_overrides(), space)
        return None
    if cfg.backend.name != "local":
        raise ValueError(f"backend={cfg.backend.name} is not supported")
    from dogbreed.tuning.report import describe_best, write_best, write_plots, write_trials_csv
    from dogbreed.tuning.study import run_study

    run_dir = Path(cfg.run_dir)
    study = run_study(cfg)
    summary = describe_best(study)
    print(summary, flush=True)
    best_file = write_best(study, run_dir, hydra_overrides())
    write_trials_csv(study, run_dir)
    write_plots(study, run_dir)
    if best_file:
        print(f"train with the best values: python train.py $(cat {best_file})", flush=True)
        return study.best_value
    return None


if __name__ == "__main__":
    import sys

    from dogbreed.config.composition import exit_on_composition_error

    exit_on_composition_error(Path(__file__).resolve().parent / "conf", "tune", sys.argv[1:])
    main()
