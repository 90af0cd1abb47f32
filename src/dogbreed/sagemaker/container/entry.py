"""What train.py calls inside a SageMaker training container, with the job's environment parsed once.

Outside a job each call leaves things as they are, so train.py calls them unconditionally.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping, Sequence

from dogbreed.config.job_environment import JobEnvironment
from dogbreed.config.secrets import mask_secrets
from dogbreed.sagemaker.container.distributed import distributed_environment, node_rank
from dogbreed.sagemaker.container.overrides import container_overrides, job_overrides
from dogbreed.sagemaker.container.resume import release_checkpoints


def sagemaker_argv(argv: Sequence[str], job: JobEnvironment) -> list[str]:
    """argv for Hydra: unchanged outside SageMaker; inside, the job's hyperparameters and placement."""
    if not job.inside_job:
        return list(argv)
    overrides = job_overrides(argv[1:], job)
    full = [*overrides, *container_overrides(overrides, job)]
    print(f"SageMaker job: Hydra overrides {mask_secrets(full)}", flush=True)
    return [argv[0], *full]


def enter_job_environment(job: JobEnvironment, environ: MutableMapping[str, str] = os.environ) -> None:
    """Set what Lightning needs to span the job's instances (node rank, master), before it starts."""
    if job.inside_job:
        for key, value in distributed_environment(job).items():
            environ.setdefault(key, value)


def container_callbacks(job: JobEnvironment) -> list:
    """Extra callbacks for fit() in a SageMaker job: the Debugger hook when the job configured one."""
    if not job.inside_job:
        return []
    from dogbreed.sagemaker.container.smdebug_hook import debugger_callbacks

    return debugger_callbacks(job.base_dir)


def leave_job(job: JobEnvironment) -> None:
    """After training ended well: a tuning trial leaves nothing big in the checkpoint location every later
    trial downloads (see resume.release_checkpoints). One process of the first host does it."""
    if not job.inside_job or job.local_rank != "0" or node_rank(job) != "0":
        return
    emptied = release_checkpoints(job)
    if emptied:
        names = ", ".join(path.name for path in emptied)
        print(f"SageMaker job: finished trial, checkpoints emptied for later trials ({names})", flush=True)
