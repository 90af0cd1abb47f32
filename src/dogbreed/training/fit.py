"""fit(cfg): the only code that trains. train.py, tuning trials and SageMaker jobs all call it."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from dogbreed.config.schema import check_train_config
from dogbreed.config.secrets import config_for_records
from dogbreed.files import write_text_atomic
from dogbreed.modeldir.archive import add_inference_code
from dogbreed.modeldir.reader import load_model
from dogbreed.modeldir.writer import export_model
from dogbreed.tracking.manifest import MANIFEST_FILE, build_manifest, hydra_overrides
from dogbreed.tracking.mlflow_run import check_logger_extras, finish_mlflow_runs, start_mlflow_runs
from dogbreed.tracking.model_card import write_model_card
from dogbreed.training.acceleration import configure_backends, maybe_compile, resolve_precision
from dogbreed.training.evaluation import run_outcomes, write_evaluation_report
from dogbreed.training.metric_lines import format_metric_lines
from dogbreed.training.resume import EpochSeeding, finished_run_metrics, read_resume_checkpoint

log = logging.getLogger(__name__)


def write_json_atomic(path: Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, default=str))


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
    check_logger_extras(cfg.get("logger"))  # a missing optional package fails before any work
    run_dir = Path(cfg.run_dir)
    # Before anything of the run is written: a checkpoint the loader refuses leaves the run folder as it was.
    resumed = read_resume_checkpoint(cfg.get("ckpt_path"), run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    # What config.yaml, MLflow and the model card record: environment references kept, secrets masked.
    recorded = config_for_records(cfg)
    if rank_zero_only.rank == 0:  # DDP relaunches this function in every process
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(recorded)))
    log.info("run directory: %s", run_dir.resolve())
    finished = finished_run_metrics(resumed, run_dir, cfg.trainer.get("max_epochs"))
    del resumed  # its memory map; Lightning reads the file again to resume
    if finished is not None:
        return finished  # resuming a finished run: nothing to train, its metrics.json stays complete
    configure_backends(cfg.get("cudnn_benchmark", True))

    log.info("preparing data <%s> from %s", cfg.data._target_, cfg.data.root)
    datamodule = instantiate(cfg.data, shuffle_seed=cfg.get("seed"))
    datamodule.prepare_data()
    datamodule.setup("fit")  # checks the layout and reads the class names before any model is built
    log.info(
        "data: %d classes, %s images",
        datamodule.num_classes,
        ", ".join(f"{split} {len(ds)}" for split, ds in datamodule.datasets.items()),
    )
    manifest = build_manifest(
        splits=datamodule.datasets,
        class_names=datamodule.class_names,
        overrides=hydra_overrides() if overrides is None else overrides,
    )
    if rank_zero_only.rank == 0:
        write_json_atomic(run_dir / MANIFEST_FILE, manifest)

    # Seeded after the data checks (which draw on their own seeded generators), before any weight is drawn.
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)  # the seed is in config.yaml
    log.info("building model <%s> %s weights=%s", cfg.model._target_, cfg.model.arch, cfg.model.weights)
    model = instantiate(cfg.model, num_classes=datamodule.num_classes, class_names=datamodule.class_names)
    image_data = datamodule  # its test files name the images of the report's gallery
    if (cfg.get("feature_cache") or {}).get("enabled"):
        # Frozen backbone: its features are computed once (cached on disk) and only the head trains.
        from dogbreed.data.features import feature_datamodule

        datamodule = feature_datamodule(datamodule, model, cfg.feature_cache.dir)
        model.head_only = True

    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    callbacks += extra_callbacks or []
    if cfg.get("seed") is not None:  # exact resume: each epoch's random draws depend on (seed, epoch)
        callbacks.append(EpochSeeding(cfg.seed))
    loggers = [instantiate(lg) for lg in (cfg.get("logger") or {}).values() if lg is not None]
    precision = resolve_precision(
        cfg.trainer.get("precision", "32-true"), cfg.trainer.get("accelerator", "auto")
    )
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, precision=precision
    )
    maybe_compile(model.net, cfg.get("compile"))
    if rank_zero_only.rank == 0:
        start_mlflow_runs(loggers, recorded, manifest, run_dir)

    log.info(
        "training for up to %s epochs on %s, precision %s",
        trainer.max_epochs,
        trainer.accelerator.__class__.__name__,
        precision,
    )
    started = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    fit_seconds = time.perf_counter() - started
    if trainer.interrupted:
        log.warning("training was interrupted: test and export skipped")
        return {}
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("val/", "train/"))}
    metrics = {k.removesuffix("_epoch"): v for k, v in metrics.items() if not k.endswith("_step")}

    checkpoint = next(
        (c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint) and c.monitor), None
    )
    best = checkpoint.best_model_path if checkpoint and checkpoint.best_model_path else None
    if best and not Path(best).is_file():
        # A resumed checkpoint remembers a best file that is not here (moved, or another machine's path).
        log.warning("the best checkpoint %s is missing: testing and exporting the final weights", best)
        best = None
    log.info("testing %s", best or "the final weights")
    (test_metrics,) = trainer.test(model, datamodule=datamodule, ckpt_path=best, verbose=False)
    metrics.update({k: float(v) for k, v in test_metrics.items()})
    if best:
        # The val/* figures reported at the end (and read by a tuning job's objective) must be those of the
        # weights tested and exported, not of the last epoch.
        # Not logged again: the loggers keep one val/* point per epoch.
        loggers, trainer.loggers = trainer.loggers, []
        try:
            (best_val,) = trainer.validate(model, datamodule=datamodule, ckpt_path=best, verbose=False)
        finally:
            trainer.loggers = loggers
        metrics.update({k: float(v) for k, v in best_val.items() if k.startswith("val/")})

    if not trainer.is_global_zero:
        return metrics  # one process writes the model and the reports
    model_dir = None
    if cfg.get("export", True):
        model_dir = export_model(
            model.net,
            Path(cfg.get("model_dir") or run_dir / "model"),
            arch=cfg.model.arch,
            class_names=datamodule.class_names,
            preprocessing=datamodule.preprocessing,
            head_hidden=cfg.model.get("head_hidden"),
            dropout=cfg.model.get("dropout", 0.0),
            manifest=manifest,
        )
        # code/ (inference.py, requirements.txt, the package) makes the folder SageMaker's model.tar.gz as is.
        add_inference_code(model_dir)
        log.info("exported model to %s", model_dir)
        if (cfg.get("onnx") or {}).get("enabled"):
            from dogbreed.modeldir.artifact import add_artifact_after_training

            add_artifact_after_training(model_dir, cfg.onnx, datamodule)

    evaluation = write_evaluation_report(
        model.last_test_confusion,
        datamodule.class_names,
        run_dir / "evaluation",
        outcomes=run_outcomes(model.last_test_outcomes, image_data),
        model=load_model(model_dir) if model_dir is not None else None,
    )
    skipped = datamodule.skipped_images
    if skipped:
        (run_dir / "skipped_images.txt").write_text("".join(f"{path}\t{why}\n" for path, why in skipped))
        log.warning(
            "skipped %d unreadable images, listed in %s", len(skipped), run_dir / "skipped_images.txt"
        )
    summary = {
        **metrics,
        "best_checkpoint": best,
        # The monitored value (val/loss by default) of the best epoch: the one tested and exported.
        "best_score": (
            float(checkpoint.best_model_score)
            if checkpoint and best and checkpoint.best_model_score is not None
            else None
        ),
        "monitor": checkpoint.monitor if checkpoint else None,
        "epochs": trainer.current_epoch,
        "fit_seconds": round(fit_seconds, 2),
        "num_classes": datamodule.num_classes,
        "skipped_images": len(skipped),
        "mean_class_accuracy": evaluation["mean_class_accuracy"],
    }
    write_json_atomic(run_dir / "metrics.json", summary)
    if model_dir is not None:
        write_model_card(
            model_dir,
            model_cfg=recorded["model"],
            metrics=summary,
            manifest=manifest,
            evaluation_dir=run_dir / "evaluation",
        )
    finish_mlflow_runs(loggers, run_dir, model_dir, summary)
    # Last lines of the job's log: the exported weights' val/* and test/* (a tuning objective reads these).
    print(format_metric_lines({k: v for k, v in metrics.items() if not k.startswith("train/")}), flush=True)
    return summary
