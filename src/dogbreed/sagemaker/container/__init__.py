"""train.py inside a SageMaker training container: job hyperparameters and SM_* paths -> Hydra overrides.

Script mode runs `python train.py --key value ...` with SM_* variables set (sagemaker-training toolkit).
`sagemaker_argv` rewrites that argv into Hydra overrides before Hydra parses it, and points the run at the
container's folders: data from SM_CHANNEL_*, the model to SM_MODEL_DIR, run outputs to SM_OUTPUT_DATA_DIR,
checkpoints to /opt/ml/checkpoints/<job name> (synced with S3 by SageMaker), resuming from last.ckpt only
when this job wrote it with these hyperparameters (a spot restart), and, on a job of several instances, the
node rank of this host so that Lightning's DDP spans them all.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from dogbreed.config.errors import UserError
from dogbreed.config.overrides import override_key, overrides_from_hyperparameters
from dogbreed.config.secrets import mask_secrets
from dogbreed.data.layout import SPLITS

log = logging.getLogger(__name__)


class ChannelLayoutError(UserError, ValueError):
    """The job's input channels do not give train/ valid/ test/."""


def in_sagemaker_job(environ: Mapping[str, str] = os.environ) -> bool:
    return "SM_TRAINING_ENV" in environ or "SM_MODEL_DIR" in environ


def base_dir(environ: Mapping[str, str] = os.environ) -> Path:
    # SAGEMAKER_BASE_DIR is the toolkit's own switch for where /opt/ml is (tests point it at a temp dir).
    return Path(environ.get("SAGEMAKER_BASE_DIR", "/opt/ml"))


# The framework module (sagemaker-pytorch-training) exports MASTER_PORT=7777 for its own launchers.
DEFAULT_MASTER_PORT = "7777"
# Beside last.ckpt: the hyperparameters the checkpoints were written with.
CHECKPOINT_OWNER_FILE = "job.json"


def job_name(environ: Mapping[str, str] = os.environ) -> str | None:
    """The training job's name: SageMaker sets TRAINING_JOB_NAME (also in the toolkit's SM_TRAINING_ENV)."""
    if environ.get("TRAINING_JOB_NAME"):
        return environ["TRAINING_JOB_NAME"]
    try:
        return json.loads(environ.get("SM_TRAINING_ENV", "{}")).get("job_name") or None
    except json.JSONDecodeError:
        return None


def checkpoint_root(environ: Mapping[str, str] = os.environ) -> Path:
    """Where SageMaker syncs checkpoints with checkpoint_s3_uri (the estimator's checkpoint_local_path)."""
    return base_dir(environ) / "checkpoints"


def checkpoint_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """This job's own checkpoint folder: a location shared by several jobs (every training job of a tuning
    job, or one checkpoint_s3_uri given to many) holds one folder per job, and a job only resumes its own."""
    name = job_name(environ)
    return checkpoint_root(environ) / name if name else checkpoint_root(environ)


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


def data_root_from_channels(environ: Mapping[str, str]) -> Path | None:
    """The folder holding train/ valid/ test/: the channels' parent when so named, else the one channel."""
    channels = {
        k[len("SM_CHANNEL_") :].lower(): Path(v) for k, v in environ.items() if k.startswith("SM_CHANNEL_")
    }
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


def hosts_of(environ: Mapping[str, str]) -> tuple[list[str], str | None]:
    """The job's hosts (SM_HOSTS, sorted as SageMaker sorts them) and this one (SM_CURRENT_HOST)."""
    try:
        hosts = sorted(json.loads(environ.get("SM_HOSTS", "[]")))
    except json.JSONDecodeError:
        hosts = []
    return hosts, environ.get("SM_CURRENT_HOST")


def distributed_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """Variables Lightning's DDP launcher reads on a job of several instances: this host's node rank and
    the first host as master (the framework module sets MASTER_ADDR/PORT; the plain toolkit does not)."""
    hosts, current = hosts_of(environ)
    if len(hosts) < 2 or current not in hosts:
        return {}
    variables = {
        "NODE_RANK": str(hosts.index(current)),
        "MASTER_ADDR": environ.get("MASTER_ADDR", hosts[0]),
        "MASTER_PORT": environ.get("MASTER_PORT", DEFAULT_MASTER_PORT),
    }
    interface = environ.get("SM_NETWORK_INTERFACE_NAME")
    if interface:  # gloo (CPU) otherwise picks the address the host name resolves to, maybe not this one
        variables["GLOO_SOCKET_IFNAME"] = environ.get("GLOO_SOCKET_IFNAME", interface)
    return variables


def container_overrides(user_overrides: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """The overrides that place the run in the container's folders, for keys the job did not set itself."""
    given = {override_key(o) for o in user_overrides}
    checkpoints = checkpoint_dir(environ)
    hosts, _ = hosts_of(environ)
    first_process = environ.get("LOCAL_RANK", "0") == "0"  # Lightning relaunches train.py per extra device
    placed = {
        "backend": "sagemaker_job",  # the job trains here, as `local` does; it must not launch another job
        "hydra.run.dir": environ.get("SM_OUTPUT_DATA_DIR", str(base_dir(environ) / "output" / "data")),
        "model_dir": environ.get("SM_MODEL_DIR", str(base_dir(environ) / "model")),
        "callbacks.model_checkpoint.dirpath": str(checkpoints),
        "callbacks.last_checkpoint.dirpath": str(checkpoints),
        "trainer.enable_progress_bar": "false",  # progress bars flood CloudWatch
    }
    if len(hosts) > 1:
        placed["++trainer.num_nodes"] = str(len(hosts))  # one node per instance; Lightning's DDP spans them
    root = data_root_from_channels(environ)
    if root is not None:
        placed["data.root"] = str(root)
    # Every host of a job finds the same synced files, so all ranks make the same choice; only the first
    # process of the first host records the owner.
    others = sorted(
        d.name
        for d in (checkpoint_root(environ).iterdir() if checkpoint_root(environ).is_dir() else ())
        if d.is_dir() and d != checkpoints and (d / "last.ckpt").is_file()
    )
    if others and first_process:
        print(f"SageMaker job: checkpoints of other jobs ({', '.join(others)}): not resumed", flush=True)
    node_rank = distributed_environment(environ).get("NODE_RANK", "0")
    resume = resumable_checkpoint(checkpoints, user_overrides, claim=first_process and node_rank == "0")
    if resume is not None:
        placed["ckpt_path"] = str(resume)
    return [f"{key}={value}" for key, value in placed.items() if override_key(key) not in given]


def sagemaker_argv(argv: Sequence[str], environ: Mapping[str, str] = os.environ) -> list[str]:
    """argv for Hydra: unchanged outside SageMaker; inside, the job's hyperparameters and placement."""
    if not in_sagemaker_job(environ):
        return list(argv)
    overrides = argv_to_overrides(argv[1:])
    if not overrides and environ.get("SM_HPS"):
        overrides = overrides_from_hyperparameters(json.loads(environ["SM_HPS"]))
    full = [*overrides, *container_overrides(overrides, environ)]
    print(f"SageMaker job: Hydra overrides {mask_secrets(full)}", flush=True)
    return [argv[0], *full]


def enter_job_environment(environ: dict[str, str] = os.environ) -> None:  # type: ignore[assignment]
    """Set what Lightning needs to span the job's instances (node rank, master), before it starts."""
    if in_sagemaker_job(environ):
        for key, value in distributed_environment(environ).items():
            environ.setdefault(key, value)


def container_callbacks() -> list:
    """Extra callbacks for fit() in a SageMaker job: the Debugger hook when the job configured one."""
    if not in_sagemaker_job():
        return []
    from dogbreed.sagemaker.container.smdebug_hook import debugger_callbacks

    return debugger_callbacks(base_dir())
