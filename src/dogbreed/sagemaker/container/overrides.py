"""The job's hyperparameters and folders as Hydra overrides: what script mode passes, and where the run goes.

Script mode runs `python train.py --key value ...`; Hydra parses `key=value`. The run is placed in the
container's folders: data from SM_CHANNEL_*, the model to SM_MODEL_DIR, run outputs to SM_OUTPUT_DATA_DIR,
checkpoints to the job's own folder (resume.py), and, on a job of several instances, one node per host.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dogbreed.config.errors import UserError
from dogbreed.config.job_environment import JobEnvironment
from dogbreed.config.overrides import override_key, overrides_from_hyperparameters
from dogbreed.data.layout import SPLITS
from dogbreed.sagemaker.container.distributed import node_rank
from dogbreed.sagemaker.container.resume import (
    best_checkpoint_dir,
    checkpoint_dir,
    other_jobs_checkpoints,
    resumable_checkpoint,
)


class ChannelLayoutError(UserError, ValueError):
    """The job's input channels do not give train/ valid/ test/."""


def argv_to_overrides(args: Sequence[str]) -> list[str]:
    """`--model.lr 3e-4 --experiment smoke` (script mode) -> ['model.lr=3e-4', 'experiment=smoke'].

    Arguments already written as Hydra overrides (`key=value`) pass through unchanged.
    """
    pairs: dict[str, str] = {}
    plain: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--") and len(arg) > 2:
            key = arg[2:]
            if "=" in key:  # --key=value
                key, value = key.split("=", 1)
                i += 1
            elif i + 1 < len(args) and not args[i + 1].startswith("--"):
                value = args[i + 1]
                i += 2
            else:
                raise ValueError(f"job hyperparameter --{key} has no value (argv: {list(args)})")
            pairs[key] = value
        else:
            plain.append(arg)
            i += 1
    return overrides_from_hyperparameters(pairs) + plain


def job_overrides(argv: Sequence[str], job: JobEnvironment) -> list[str]:
    """The overrides the job was given: script mode's argv, else the toolkit's SM_HPS."""
    overrides = argv_to_overrides(argv)
    if not overrides and job.hyperparameters:
        overrides = overrides_from_hyperparameters(job.hyperparameters)
    return overrides


def data_root_from_channels(job: JobEnvironment) -> Path | None:
    """The folder holding train/ valid/ test/: the channels' parent when so named, else the one channel."""
    channels = job.channels
    if not channels:
        return None
    if set(SPLITS) <= set(channels):
        parents = {channels[split].parent for split in SPLITS}
        if len(parents) == 1:  # /opt/ml/input/data/{train,valid,test}
            return parents.pop()
    if len(channels) == 1:
        (root,) = channels.values()
        if not (root / SPLITS[0]).is_dir():
            inner = [d for d in root.iterdir() if d.is_dir() and (d / SPLITS[0]).is_dir()]
            if len(inner) == 1:  # the channel holds e.g. dogImages/{train,valid,test}
                return inner[0]
        return root
    raise ChannelLayoutError(
        f"SageMaker input channels {sorted(channels)}: give channels named {', '.join(SPLITS)} "
        f"or a single channel holding {'/ '.join(SPLITS)}/"
    )


def container_overrides(user_overrides: Sequence[str], job: JobEnvironment) -> list[str]:
    """The overrides that place the run in the container's folders, for keys the job did not set itself."""
    given = {override_key(o) for o in user_overrides}
    checkpoints = checkpoint_dir(job)
    first_process = job.local_rank == "0"
    placed = {
        "backend": "sagemaker_job",  # the job trains here, as `local` does; it must not launch another job
        "hydra.run.dir": str(job.output_data_dir or job.base_dir / "output" / "data"),
        "model_dir": str(job.model_dir or job.base_dir / "model"),
        "callbacks.model_checkpoint.dirpath": str(best_checkpoint_dir(job)),
        "callbacks.last_checkpoint.dirpath": str(checkpoints),
        "trainer.enable_progress_bar": "false",  # progress bars flood CloudWatch
    }
    if len(job.hosts) > 1:
        placed["++trainer.num_nodes"] = str(len(job.hosts))  # one node per instance; DDP spans them
    root = data_root_from_channels(job)
    if root is not None:
        placed["data.root"] = str(root)
    # Every host of a job finds the same synced files, so all ranks make the same choice; only the first
    # process of the first host records the owner.
    others = other_jobs_checkpoints(job)
    if others and first_process:
        print(f"SageMaker job: checkpoints of other jobs ({', '.join(others)}): not resumed", flush=True)
    claim = first_process and node_rank(job) == "0"
    resume = resumable_checkpoint(checkpoints, user_overrides, claim=claim)
    if resume is not None:
        placed["ckpt_path"] = str(resume)
    return [f"{key}={value}" for key, value in placed.items() if override_key(key) not in given]
