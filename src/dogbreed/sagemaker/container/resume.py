"""A job's own checkpoint folder, and resuming only what this job wrote (a spot restart).

SageMaker syncs /opt/ml/checkpoints with checkpoint_s3_uri; a location shared by several jobs (every
training job of a tuning job, or one URI given to many) holds one folder per job, and a job resumes only
its own last.ckpt, written with the same hyperparameters.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from dogbreed.config.job_environment import JobEnvironment
from dogbreed.config.secrets import mask_secrets

# Beside last.ckpt: the hyperparameters the checkpoints were written with.
CHECKPOINT_OWNER_FILE = "job.json"


def checkpoint_root(job: JobEnvironment) -> Path:
    """Where SageMaker syncs checkpoints with checkpoint_s3_uri (the estimator's checkpoint_local_path)."""
    return job.base_dir / "checkpoints"


def checkpoint_dir(job: JobEnvironment) -> Path:
    """This job's own checkpoint folder under the synced location."""
    return checkpoint_root(job) / job.job_name if job.job_name else checkpoint_root(job)


def other_jobs_checkpoints(job: JobEnvironment) -> list[str]:
    """Names of the other jobs' folders holding a last.ckpt under the synced location (never resumed)."""
    root, own = checkpoint_root(job), checkpoint_dir(job)
    if not root.is_dir():
        return []
    return sorted(d.name for d in root.iterdir() if d.is_dir() and d != own and (d / "last.ckpt").is_file())


def resumable_checkpoint(
    checkpoints: Path, job_overrides: Sequence[str], *, claim: bool = True
) -> Path | None:
    """last.ckpt in `checkpoints` when this job wrote it (same hyperparameters): a spot restart resumes it.

    A last.ckpt written with other hyperparameters (or by an unknown run) is never resumed: its folder is
    moved aside, kept, and the job starts fresh, saying so. `claim` records this job as the folder's owner.
    """
    owner_file = checkpoints / CHECKPOINT_OWNER_FILE
    mine = {"overrides": sorted(mask_secrets(list(job_overrides)))}  # a file under /opt/ml: no secret
    last = checkpoints / "last.ckpt"
    resume = None
    if last.is_file():
        try:
            owner = json.loads(owner_file.read_text())
        except (OSError, ValueError):
            owner = None
        if owner is not None and owner.get("overrides") == mine["overrides"]:
            resume = last  # a spot interruption: carry on from there
        else:
            kept = _set_aside(checkpoints)
            found = "with other hyperparameters " + str(owner["overrides"]) if owner else "by an unknown run"
            print(
                f"SageMaker job: {last} was written {found}: not resumed, starting fresh (kept in {kept})",
                flush=True,
            )
    if claim:
        checkpoints.mkdir(parents=True, exist_ok=True)
        owner_file.write_text(json.dumps(mine))
    return resume


def _set_aside(folder: Path) -> Path:
    n = 1
    while (aside := folder.with_name(f"{folder.name}.foreign-{n}")).exists():
        n += 1
    folder.rename(aside)
    return aside
