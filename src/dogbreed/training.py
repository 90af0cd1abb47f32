"""fit(cfg): the only code that trains. train.py, tuning trials and SageMaker jobs all call it."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import lightning.pytorch as pl
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from dogbreed.acceleration import configure_backends, maybe_compile, resolve_precision
from dogbreed.callbacks import format_metric_lines
from dogbreed.evaluation import write_report
from dogbreed.export import export_model
from dogbreed.files import write_text_atomic
from dogbreed.resume import EpochSeeding, finished_run_metrics
from dogbreed.serving.packaging import add_inference_code

log = logging.getLogger(__name__)


def write_json_atomic(path: Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, default=str))


def fit(cfg: DictConfig, extra_callbacks: list[pl.Callback] | None = None) -> dict:
    """Train, test, export and evaluate as `cfg` says; return the final metrics (also in metrics.json)."""
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if rank_zero_only.rank == 0:  # DDP relaunches this function in every process
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    log.info("run directory: %s", run_dir.resolve())
    finished = finished_run_metrics(cfg.get("ckpt_path"), run_dir, cfg.trainer.get("max_epochs"))
    if finished is not None:
        return finished  # resuming a finished run: nothing to train, its metrics.json stays complete
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
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

    log.info("building model <%s> %s weights=%s", cfg.model._target_, cfg.model.arch, cfg.model.weights)
    model = instantiate(cfg.model, num_classes=datamodule.num_classes, class_names=datamodule.class_names)
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
    log.info("testing %s", best or "the final weights")
    (test_metrics,) = trainer.test(model, datamodule=datamodule, ckpt_path=best, verbose=False)
    metrics.update({k: float(v) for k, v in test_metrics.items()})

    if not trainer.is_global_zero:
        return metrics  # one process writes the model and the reports
    if cfg.get("export", True):
        model_dir = export_model(
            model.net,
            Path(cfg.get("model_dir") or run_dir / "model"),
            arch=cfg.model.arch,
            class_names=datamodule.class_names,
            preprocessing=datamodule.preprocessing,
            head_hidden=cfg.model.get("head_hidden"),
            dropout=cfg.model.get("dropout", 0.0),
        )
        # code/ (inference.py, requirements.txt, the package) makes the folder SageMaker's model.tar.gz as is.
        add_inference_code(model_dir)
        log.info("exported model to %s", model_dir)
        if (cfg.get("onnx") or {}).get("enabled"):
            from dogbreed.inference_artifact import add_artifact_after_training

            add_artifact_after_training(model_dir, cfg.onnx, datamodule)

    evaluation = write_report(model.last_test_confusion, datamodule.class_names, run_dir / "evaluation")
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
        "best_score": float(checkpoint.best_model_score) if checkpoint and best else None,
        "monitor": checkpoint.monitor if checkpoint else None,
        "epochs": trainer.current_epoch,
        "fit_seconds": round(fit_seconds, 2),
        "num_classes": datamodule.num_classes,
        "skipped_images": len(skipped),
        "mean_class_accuracy": evaluation["mean_class_accuracy"],
    }
    write_json_atomic(run_dir / "metrics.json", summary)
    print(format_metric_lines(metrics), flush=True)
    return summary
