"""Writing a model folder (dogbreed.modeldir.format): the export after training, and the record of the
optimised artifacts added to its model.json afterwards."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from dogbreed.data.preprocessing import Preprocessing
from dogbreed.files import remove_staging_litter, replace_dir, staging_dir, write_text_atomic
from dogbreed.modeldir.format import (
    ARTIFACT_FILES,
    ARTIFACTS_KEY,
    CONFIG_FILE,
    FORMAT_VERSION,
    WEIGHTS_FILE,
)
from dogbreed.modeldir.reader import read_model_description


def export_model(
    net: nn.Module,
    out_dir: str | Path,
    *,
    arch: str,
    class_names: list[str],
    preprocessing: Preprocessing,
    head_hidden: int | None = None,
    dropout: float = 0.0,
    manifest: Mapping | None = None,
) -> Path:
    """Write the model directory as one atomic swap: a reader, or a run killed midway, sees the previous
    model/ or the new one whole, never a mix; what a killed export left beside it is removed first.
    Extra files of the previous model/ (code/, added for SageMaker) are carried into the new one.

    `manifest` (the run's provenance, dogbreed.tracking.manifest) is embedded in model.json as it is.
    """
    out_dir = Path(out_dir)
    remove_staging_litter(out_dir)
    staged = staging_dir(out_dir)
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        torch.save(state, staged / WEIGHTS_FILE)
        config = {
            "format_version": FORMAT_VERSION,
            "arch": arch,
            "num_classes": len(class_names),
            "head_hidden": head_hidden,
            "dropout": dropout,
            "class_names": list(class_names),
            "preprocessing": preprocessing.to_dict(),
        }
        if manifest is not None:
            config["manifest"] = dict(manifest)
        (staged / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=str))
        carry_extra_files(out_dir, staged)
        replace_dir(staged, out_dir)
    finally:
        shutil.rmtree(staged, ignore_errors=True)  # only still there when the export failed
    return out_dir


def carry_extra_files(previous: Path, staged: Path) -> None:
    """Copy what the previous model folder holds besides the weights, model.json and the artifacts made
    from its weights (code/, the model card) into the staged new one."""
    if not previous.is_dir():
        return
    for extra in previous.iterdir():
        if extra.name in (WEIGHTS_FILE, CONFIG_FILE, *ARTIFACT_FILES):
            continue
        if extra.is_dir():
            shutil.copytree(extra, staged / extra.name, symlinks=True)
        else:
            shutil.copy2(extra, staged / extra.name, follow_symlinks=False)


def record_artifacts(model_dir: str | Path, record: dict) -> None:
    """Replace model.json's record of the optimised artifacts (written atomically: a reader sees the old
    model.json or the new one)."""
    model_dir = Path(model_dir)
    config = read_model_description(model_dir).config
    config[ARTIFACTS_KEY] = record
    write_text_atomic(model_dir / CONFIG_FILE, json.dumps(config, indent=2))
