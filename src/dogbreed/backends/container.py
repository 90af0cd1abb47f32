"""train.py inside a SageMaker training container: job hyperparameters and SM_* paths -> Hydra overrides.

Script mode runs `python train.py --key value ...` with SM_* variables set (sagemaker-training toolkit).
`sagemaker_argv` rewrites that argv into Hydra overrides before Hydra parses it, and points the run at the
container's folders: data from SM_CHANNEL_*, the model to SM_MODEL_DIR, run outputs to SM_OUTPUT_DATA_DIR,
checkpoints to /opt/ml/checkpoints (synced with S3 by SageMaker), resuming from last.ckpt when one is there.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from dogbreed.backends.job_spec import overrides_from_hyperparameters
from dogbreed.data.folders import SPLITS

log = logging.getLogger(__name__)


class ChannelLayoutError(ValueError):
    """The job's input channels do not give train/ valid/ test/."""


def in_sagemaker_job(environ: Mapping[str, str] = os.environ) -> bool:
    return "SM_TRAINING_ENV" in environ or "SM_MODEL_DIR" in environ


def base_dir(environ: Mapping[str, str] = os.environ) -> Path:
    # SAGEMAKER_BASE_DIR is the toolkit's own switch for where /opt/ml is (tests point it at a temp dir).
    return Path(environ.get("SAGEMAKER_BASE_DIR", "/opt/ml"))


def checkpoint_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Where SageMaker syncs checkpoints with checkpoint_s3_uri (the estimator's checkpoint_local_path)."""
    return base_dir(environ) / "checkpoints"


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


def container_overrides(user_overrides: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """The overrides that place the run in the container's folders, for keys the job did not set itself."""
    given = {o.split("=", 1)[0].lstrip("+~") for o in user_overrides}
    checkpoints = checkpoint_dir(environ)
    placed = {
        "backend": "local",  # the job trains here; it must not launch another job
        "hydra.run.dir": environ.get("SM_OUTPUT_DATA_DIR", str(base_dir(environ) / "output" / "data")),
        "model_dir": environ.get("SM_MODEL_DIR", str(base_dir(environ) / "model")),
        "callbacks.model_checkpoint.dirpath": str(checkpoints),
        "callbacks.last_checkpoint.dirpath": str(checkpoints),
        "trainer.enable_progress_bar": "false",  # progress bars flood CloudWatch
    }
    root = data_root_from_channels(environ)
    if root is not None:
        placed["data.root"] = str(root)
    if (checkpoints / "last.ckpt").is_file():
        placed["ckpt_path"] = str(checkpoints / "last.ckpt")  # a spot interruption: carry on from there
    return [f"{key}={value}" for key, value in placed.items() if key not in given]


def sagemaker_argv(argv: Sequence[str], environ: Mapping[str, str] = os.environ) -> list[str]:
    """argv for Hydra: unchanged outside SageMaker; inside, the job's hyperparameters and placement."""
    if not in_sagemaker_job(environ):
        return list(argv)
    overrides = argv_to_overrides(argv[1:])
    if not overrides and environ.get("SM_HPS"):
        overrides = overrides_from_hyperparameters(json.loads(environ["SM_HPS"]))
    full = [*overrides, *container_overrides(overrides, environ)]
    print(f"SageMaker job: Hydra overrides {full}", flush=True)
    return [argv[0], *full]


def container_callbacks() -> list:
    """Extra callbacks for fit() in a SageMaker job: the Debugger hook when the job configured one."""
    if not in_sagemaker_job():
        return []
    from dogbreed.backends.smdebug_hook import debugger_callbacks

    return debugger_callbacks(base_dir())
