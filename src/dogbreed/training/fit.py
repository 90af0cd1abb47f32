"""fit(cfg): the only code that trains. train.py, tuning trials and SageMaker jobs all call it.

fit = build (check the config, data, the run's record, model, callbacks, loggers, trainer) -> run (train, then
test and validate the best checkpoint) -> finish (export, evaluation report, metrics.json, model card, MLflow,
the final metric lines).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from dogbreed.config.job_environment import in_sagemaker_job
from dogbreed.config.overrides import override_key
from dogbreed.config.schema import check_train_config
from dogbreed.modeldir.archive import add_inference_code
from dogbreed.modeldir.reader import load_model
from dogbreed.modeldir.runtime_wheels import this_python
from dogbreed.modeldir.writer import export_model
from dogbreed.tracking.manifest import build_manifest, hydra_overrides
from dogbreed.tracking.mlflow_run import (
    check_logger_extras,
    finish_mlflow_runs,
    instantiate_logger,
    mlflow_model_values,
    start_mlflow_runs,
)
from dogbreed.tracking.model_card import write_model_card
from dogbreed.tracking.run_record import (
    RunRecord,
    append_run_resume,
    new_run_record,
    read_run_record,
    write_run_metrics,
    write_run_record,
)
from dogbreed.tracking.tensorboard import finish_tensorboard
from dogbreed.training.acceleration import (
    check_accelerator_available,
    configure_backends,
    maybe_compile,
    resolve_precision,
)
from dogbreed.training.callbacks import timed_checkpoints
from dogbreed.training.evaluation import run_outcomes, write_evaluation_report
from dogbreed.training.interruption import interrupted_by, training_interrupted
from dogbreed.training.log_handlers import lightning_lines_once
from dogbreed.training.metric_lines import epoch_metrics, format_metric_lines
from dogbreed.training.peers import peer_lost
from dogbreed.training.resume import EpochSeeding, finished_run_metrics, read_resume_checkpoint
from dogbreed.training.resume_record import RESUME_KEYS

log = logging.getLogger(__name__)


@dataclass
class Parts:
    """What build() makes and run()/finish() use."""

    cfg: DictConfig
    run_dir: Path
    record: RunRecord  # config.yaml and manifest.json as written
    images: Any  # the image data module: its test files name the images of the report's gallery
    datamodule: Any  # what trains: the images, or their cached backbone features
    model: Any  # the LightningModule cfg.model names
    trainer: pl.Trainer
    loggers: list


@dataclass
class Outcome:
    """What run() leaves: the val/train/test metrics of the weights tested, and where they came from."""

    metrics: dict[str, float]
    checkpoint: ModelCheckpoint | None  # the callback that chose the best epoch
    best: str | None  # the best checkpoint's file, tested and exported; None: the final weights
    fit_seconds: float


def fit(
    cfg: DictConfig,
    extra_callbacks: list[pl.Callback] | None = None,
    overrides: Sequence[str] | None = None,
) -> dict:
    """Train, test, export and evaluate as `cfg` says; return the final metrics (also in metrics.json).

    `overrides`: the settings that made `cfg` differ from the defaults, for the manifest and the model card
    (default: the command line's Hydra overrides).
    """
    check_train_config(cfg)  # a bad value stops here, before data or model is built
    check_accelerator_available(cfg.trainer.get("accelerator", "auto"))
    check_logger_extras(cfg.get("logger"))  # a missing optional package fails before any work
    lightning_lines_once()
    run_dir = Path(cfg.run_dir)
    log.info("run directory: %s", run_dir.resolve())
    finished = finished_run(cfg, run_dir)
    if finished is not None:
        return finished  # resuming a finished run: nothing to train, its record stays as it is
    parts = build(cfg, run_dir, extra_callbacks or [], hydra_overrides() if overrides is None else overrides)
    outcome = run(parts)
    if not parts.trainer.is_global_zero:
        return outcome.metrics  # one process writes the model and the reports
    return finish(parts, outcome)


def finished_run(cfg: DictConfig, run_dir: Path) -> dict | None:
    """The metrics of the finished run that cfg.ckpt_path resumes, else None (something to train).

    The checkpoint is read before anything of the run is written: one the loader refuses leaves the run
    folder as it was."""
    if not cfg.get("ckpt_path"):
        return None
    resumed = read_resume_checkpoint(cfg.get("ckpt_path"), run_dir)
    # Lightning reads the file again to resume; the memory map is let go when this returns.
    return finished_run_metrics(resumed, run_dir, cfg.trainer.get("max_epochs"))


def build(
    cfg: DictConfig, run_dir: Path, extra_callbacks: list[pl.Callback], overrides: Sequence[str]
) -> Parts:
    """The data (checked), the run's record (written), the model, the callbacks, the loggers, the trainer."""
    configure_backends(cfg.get("cudnn_benchmark", True))
    images = prepare_images(cfg)
    manifest = build_manifest(splits=images.datasets, class_names=images.class_names, overrides=overrides)
    record = start_run_record(cfg, run_dir, manifest)
    # Seeded after the data checks (which draw on their own seeded generators), before any weight is drawn.
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)  # the seed is in config.yaml
    model, datamodule = build_model(cfg, images)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    callbacks += timed_checkpoints(cfg, run_dir)
    callbacks += extra_callbacks
    if cfg.get("seed") is not None:  # exact resume: each epoch's random draws depend on (seed, epoch)
        callbacks.append(EpochSeeding(cfg.seed))
    loggers = [instantiate_logger(lg) for lg in (cfg.get("logger") or {}).values() if lg is not None]
    precision = resolve_precision(
        cfg.trainer.get("precision", "32-true"), cfg.trainer.get("accelerator", "auto")
    )
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, precision=precision
    )
    maybe_compile(model.net, cfg.get("compile"))
    if rank_zero_only.rank == 0:
        start_mlflow_runs(loggers, record.config, manifest, run_dir)
    log.info(
        "training for up to %s epochs on %s, precision %s",
        trainer.max_epochs,
        trainer.accelerator.__class__.__name__,
        precision,
    )
    return Parts(cfg, run_dir, record, images, datamodule, model, trainer, loggers)


def start_run_record(cfg: DictConfig, run_dir: Path, manifest: dict[str, Any]) -> RunRecord:
    """The run's record, written: config.yaml and manifest.json for a new run; for a resumed one (a run
    recorded in run_dir, cfg.ckpt_path set) a line of resumes.jsonl, its first files kept as they are."""
    existing = read_run_record(run_dir)
    if not cfg.get("ckpt_path") or existing.manifest is None:
        record = new_run_record(cfg, manifest)
        if rank_zero_only.rank == 0:  # DDP relaunches this function in every process
            write_run_record(run_dir, record)
        return record
    recorded = set(existing.overrides)
    resume = {
        "created": manifest["created"],
        "ckpt_path": cfg.ckpt_path,
        "command_line": manifest["command_line"],
        # What this resume changed (dogbreed.training.resume_record.MAY_CHANGE); where to resume from is not.
        "overrides": [
            o for o in manifest["overrides"] if o not in recorded and override_key(o) not in RESUME_KEYS
        ],
    }
    if rank_zero_only.rank == 0:
        append_run_resume(run_dir, resume)
    return replace(existing, resumes=(*existing.resumes, resume))


def prepare_images(cfg: DictConfig) -> Any:
    """cfg.data's data module, prepared and set up: its layout checked and its class names read."""
    log.info("preparing data <%s> from %s", cfg.data._target_, cfg.data.root)
    images = instantiate(cfg.data, shuffle_seed=cfg.get("seed"))
    images.prepare_data()
    images.setup("fit")  # checks the layout and reads the class names before any model is built
    log.info(
        "data: %d classes, %s images",
        images.num_classes,
        ", ".join(f"{split} {len(ds)}" for split, ds in images.datasets.items()),
    )
    return images


def build_model(cfg: DictConfig, images: Any) -> tuple[Any, Any]:
    """cfg.model's LightningModule, and the data module it trains on: the images, or with feature_cache
    their backbone features (computed once, cached on disk) for a model built to run its head only."""
    log.info("building model <%s> %s weights=%s", cfg.model._target_, cfg.model.arch, cfg.model.weights)
    cached = bool((cfg.get("feature_cache") or {}).get("enabled"))
    head_only = {"head_only": True} if cached else {}
    model = instantiate(
        cfg.model, num_classes=images.num_classes, class_names=images.class_names, **head_only
    )
    if not cached:
        return model, images
    from dogbreed.data.features import feature_datamodule

    return model, feature_datamodule(images, model, cfg.feature_cache.dir)


def run(parts: Parts) -> Outcome:
    """Train (resuming cfg.ckpt_path), then test the best checkpoint.

    A signal that stops training raises TrainingInterrupted, a lost peer PeerLost (both SystemExit, non-zero):
    no test, no export."""
    trainer, model, datamodule = parts.trainer, parts.model, parts.datamodule
    started = time.perf_counter()
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=parts.cfg.get("ckpt_path"))
    except BaseException as exc:
        lost = peer_lost(exc, trainer)
        if lost is not None:
            if trainer.local_rank == 0:
                print(lost.line, file=sys.stderr, flush=True)
            raise lost from None
        sig = interrupted_by(exc, trainer)
        if sig is None:
            raise
        interrupted = training_interrupted(trainer, sig, parts.run_dir)
        if trainer.is_global_zero:
            print(interrupted.line, file=sys.stderr, flush=True)
        raise interrupted from None
    fit_seconds = time.perf_counter() - started
    metrics = epoch_metrics(trainer.callback_metrics)
    checkpoint, best = best_checkpoint(trainer)
    log.info("testing %s", best or "the final weights")
    (test_metrics,) = trainer.test(model, datamodule=datamodule, ckpt_path=best, verbose=False)
    metrics.update({k: float(v) for k, v in test_metrics.items()})
    if best:
        # The val/* figures reported at the end (and read by a tuning job's objective) must be those of the
        # weights tested and exported, not of the last epoch.
        metrics.update(validate_quietly(trainer, model, datamodule, best))
    return Outcome(metrics, checkpoint, best, fit_seconds)


def best_checkpoint(trainer: pl.Trainer) -> tuple[ModelCheckpoint | None, str | None]:
    """The monitoring checkpoint callback and its best file (None: test and export the final weights)."""
    checkpoint = next(
        (c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint) and c.monitor), None
    )
    best = checkpoint.best_model_path if checkpoint and checkpoint.best_model_path else None
    if best and not Path(best).is_file():
        # A resumed checkpoint remembers a best file that is not here (moved, or another machine's path).
        log.warning("the best checkpoint %s is missing: testing and exporting the final weights", best)
        best = None
    return checkpoint, best


def validate_quietly(trainer: pl.Trainer, model: Any, datamodule: Any, best: str) -> dict[str, float]:
    """The val/* metrics of checkpoint `best`, not logged: the loggers keep one val/* point per epoch."""
    loggers, trainer.loggers = trainer.loggers, []
    try:
        (best_val,) = trainer.validate(model, datamodule=datamodule, ckpt_path=best, verbose=False)
    finally:
        trainer.loggers = loggers
    return {k: float(v) for k, v in best_val.items() if k.startswith("val/")}


def finish(parts: Parts, outcome: Outcome) -> dict:
    """Export the model, write the evaluation report, metrics.json and the model card, close the MLflow
    runs, and print the final metric lines; return the summary that metrics.json holds."""
    cfg, run_dir, model = parts.cfg, parts.run_dir, parts.model
    model_dir = export(parts) if cfg.get("export", True) else None
    outcomes = run_outcomes(model.last_test_outcomes, parts.images)
    evaluation = write_evaluation_report(
        model.last_test_confusion,
        parts.datamodule.class_names,
        run_dir / "evaluation",
        outcomes=outcomes,
        model=load_model(model_dir) if model_dir is not None else None,
    )
    skipped = write_skipped_images(run_dir, parts.datamodule.skipped_images)
    summary = summarize(parts, outcome, skipped, evaluation["mean_class_accuracy"])
    write_run_metrics(run_dir, summary)
    if model_dir is not None:
        write_model_card(
            model_dir,
            model_cfg=(parts.record.config or {})["model"],
            data_cfg=(parts.record.config or {})["data"],
            metrics=summary,
            manifest=parts.record.manifest or {},
            evaluation_dir=run_dir / "evaluation",
        )
    finish_mlflow_runs(parts.loggers, run_dir, model_dir, summary, mlflow_model_values(cfg.get("logger")))
    if rank_zero_only.rank == 0:
        config = parts.record.config or {}
        finish_tensorboard(
            parts.loggers, run_dir / "evaluation", outcomes, parts.datamodule.class_names, config, summary
        )
    if not cfg.get("keep_checkpoints", True):
        remove_checkpoints(parts.trainer)
    # Last lines of the job's log: the exported weights' val/* and test/* (a tuning objective reads these).
    metrics = outcome.metrics
    print(format_metric_lines({k: v for k, v in metrics.items() if not k.startswith("train/")}), flush=True)
    return summary


def remove_checkpoints(trainer: pl.Trainer) -> None:
    """keep_checkpoints=false: a finished run's checkpoint files go; its model/ holds the tested weights."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.dirpath:
            folder = Path(callback.dirpath)
            for path in folder.glob("*.ckpt"):
                path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # a folder holding anything else stays
                folder.rmdir()
    log.info("checkpoints removed (keep_checkpoints=false): the exported model holds the tested weights")


def export(parts: Parts) -> Path:
    """The trained network as a model folder (cfg.model_dir, else <run_dir>/model) SageMaker serves as is."""
    cfg, datamodule = parts.cfg, parts.datamodule
    model_dir = export_model(
        parts.model.net,
        Path(cfg.get("model_dir") or parts.run_dir / "model"),
        arch=cfg.model.arch,
        class_names=datamodule.class_names,
        preprocessing=datamodule.preprocessing,
        head_hidden=cfg.model.get("head_hidden"),
        dropout=cfg.model.get("dropout", 0.0),
        manifest=parts.record.manifest,
    )
    log.info("exported model to %s", model_dir)
    if (cfg.get("onnx") or {}).get("enabled"):
        from dogbreed.modeldir.artifact import add_artifact_after_training

        add_artifact_after_training(model_dir, cfg.onnx, datamodule)
    # code/ (inference.py, requirements.txt, the package) makes the folder SageMaker's model.tar.gz as is;
    # written after the artifact, whose runtime it lists. In a job the folder is the endpoint's archive:
    # the runtime's wheels ship in it, so the endpoint needs no package index (modeldir.archive).
    add_inference_code(model_dir, python_version=this_python() if in_sagemaker_job() else None)
    return model_dir


def write_skipped_images(run_dir: Path, skipped: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """skipped_images.txt: each unreadable image data.on_bad_image=skip left out, and why."""
    if skipped:
        (run_dir / "skipped_images.txt").write_text("".join(f"{path}\t{why}\n" for path, why in skipped))
        log.warning(
            "skipped %d unreadable images, listed in %s", len(skipped), run_dir / "skipped_images.txt"
        )
    return skipped


def summarize(parts: Parts, outcome: Outcome, skipped: list, mean_class_accuracy: float) -> dict:
    """metrics.json: the tested weights' metrics, where they came from, and the run's size and time."""
    checkpoint, best = outcome.checkpoint, outcome.best
    return {
        **outcome.metrics,
        "best_checkpoint": best,
        # The monitored value (val/loss by default) of the best epoch: the one tested and exported.
        "best_score": (
            float(checkpoint.best_model_score)
            if checkpoint and best and checkpoint.best_model_score is not None
            else None
        ),
        "monitor": checkpoint.monitor if checkpoint else None,
        "epochs": parts.trainer.current_epoch,
        "fit_seconds": round(outcome.fit_seconds, 2),
        "num_classes": parts.datamodule.num_classes,
        "skipped_images": len(skipped),
        "mean_class_accuracy": mean_class_accuracy,
    }
