"""python train.py backend=local|sagemaker [experiment=smoke] [overrides]: train, test, export.

python train.py resume=<run folder> [trainer.max_epochs=N]: carry on a stopped run with its own settings."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

SOURCE = Path(__file__).resolve().parent / "src"
if SOURCE.is_dir():
    # A checkout's train.py runs its own library: inside a SageMaker job the project arrives as source
    # (train.py, conf/, src/), not pip-installed.
    sys.path.insert(0, str(SOURCE))

# After the path is set: inside a job these come from the source above.
from dogbreed.config.errors import exit_on_user_error  # noqa: E402
from dogbreed.config.job_environment import JobEnvironment  # noqa: E402
from dogbreed.config.schema import check_train_config  # noqa: E402

JOB = JobEnvironment.from_environ(os.environ)  # the SageMaker job this runs in (empty outside one)
# Whether the run's folder was there before this process; such a folder is never removed (set below).
RUN_DIR_EXISTED = True


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> float | None:
    if cfg.backend.name in ("local", "sagemaker_job"):  # train in this process: here, or inside a job
        from dogbreed.sagemaker.container.entry import container_callbacks, leave_job
        from dogbreed.tracking.run_record import remove_untrained_run
        from dogbreed.training.fit import fit

        try:
            metrics = fit(cfg, extra_callbacks=container_callbacks(JOB))
        except Exception:
            if not RUN_DIR_EXISTED:  # a run that failed before it trained leaves no folder behind
                remove_untrained_run(cfg.run_dir)
            raise
        leave_job(JOB)  # inside a job that ended well: a tuning trial's checkpoints emptied for later trials
        return metrics.get("val/loss")
    check_train_config(cfg)
    if cfg.backend.name == "sagemaker":
        from dogbreed.sagemaker.training_job import attach, launch_training
        from dogbreed.tracking.manifest import hydra_overrides

        # A SageMakerSetupError (no credentials, AWS refusing, a bad combination) is one `error:` line.
        if cfg.get("attach"):  # an existing training job: follow it, download its results
            attach(cfg, str(cfg.attach), "training")
        else:
            launch_training(cfg, hydra_overrides())  # as typed: ${oc.env:X} unresolved
        return None
    raise ValueError(f"backend={cfg.backend.name} is not supported yet")


if __name__ == "__main__":
    from dogbreed.config.composition import exit_on_composition_error
    from dogbreed.sagemaker.container.entry import enter_job_environment, sagemaker_argv
    from dogbreed.training.resume_record import resume_argv

    sys.argv = sagemaker_argv(sys.argv, JOB)
    enter_job_environment(JOB, os.environ)
    # `resume=<run>` (or hydra.run.dir=<run> ckpt_path=last): the run's own overrides, read from its record
    # before Hydra composes anything; None: a finished run, nothing to do.
    resumed = exit_on_user_error(resume_argv)(sys.argv[1:])
    if resumed is None:
        raise SystemExit(0)
    sys.argv = [sys.argv[0], *resumed]
    # hydra.run.dir naming a folder that exists (a resumed run's included); without it Hydra makes a new one.
    RUN_DIR_EXISTED = any(a.startswith("hydra.run.dir=") and Path(a[14:]).exists() for a in resumed)
    exit_on_composition_error(SOURCE.parent / "conf", "train", sys.argv[1:])  # before Hydra's own report
    main()
