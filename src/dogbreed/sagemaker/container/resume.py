"""A job's own checkpoint folder, and resuming only what this job wrote (a spot restart).

SageMaker syncs /opt/ml/checkpoints with checkpoint_s3_uri; a location shared by several jobs (every
training job of a tuning job, or one URI given to many) holds one folder per job, and a job resumes only
its own last.ckpt, written with the same hyperparameters.

A tuning job has one location for all its training jobs, and every trial starts with all of it downloaded.
So a trial keeps only what a restart needs there (last.ckpt, refreshed in place), writes its best-so-far
checkpoint outside it, and when it ends well empties its checkpoint files in place: the sync uploads new and
changed files, and an emptied file replaces the big one, whether or not a deletion would reach S3.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from dogbreed.config.job_environment import JobEnvironment
from dogbreed.config.secrets import mask_secrets

# Beside last.ckpt: the hyperparameters the checkpoints were written with.
CHECKPOINT_OWNER_FILE = "job.json"


def is_tuning_trial(job: JobEnvironment) -> bool:
    """Whether this job is one training job of a tuning job (its checkpoint location is shared)."""
    return job.tuning_objective is not None


def best_checkpoint_dir(job: JobEnvironment) -> Path:
    """Where the best-so-far checkpoint goes: this job's synced folder, but in a tuning trial a folder that
    is never uploaded (under /opt/ml/output, beside SageMaker's own local folders, not in output/data)."""
    return job.base_dir / "output" / "best-checkpoints" if is_tuning_trial(job) else checkpoint_dir(job)


def holds_checkpoint(path: Path) -> bool:
    """A checkpoint file with something in it (a finished trial leaves its files empty)."""
    return path.is_file() and path.stat().st_size > 0


def release_checkpoints(job: JobEnvironment) -> list[Path]:
    """At a tuning trial's successful end: its checkpoint files emptied in place (the next sync uploads the
    empty versions, so later trials download nothing of this one); job.json says it finished."""
    folder = checkpoint_dir(job)
    if not is_tuning_trial(job) or not folder.is_dir():
        return []
    emptied = [path for path in sorted(folder.glob("*.ckpt")) if holds_checkpoint(path)]
    for path in emptied:
        path.write_bytes(b"")
    owner_file = folder / CHECKPOINT_OWNER_FILE
    try:
        owner = json.loads(owner_file.read_text())
    except (OSError, ValueError):
        owner = {}
    owner_file.write_text(json.dumps({**owner, "finished": True}))
    return emptied


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
    return sorted(
        d.name for d in root.iterdir() if d.is_dir() and d != own and holds_checkpoint(d / "last.ckpt")
    )


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
    if holds_checkpoint(last):  # an empty one: a finished trial's, nothing to resume
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
