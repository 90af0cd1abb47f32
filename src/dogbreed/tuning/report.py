"""What a finished study leaves in the tune run directory: best overrides, trials table, plots.

<run_dir>/
  best_overrides.txt    one Hydra override a line: `python train.py $(cat best_overrides.txt)`
  best_params.yaml      the best trial: number, objective value, params, its run directory
  trials.csv            study.trials_dataframe(): every trial, its params, state, value, user attributes
  plots/*.png           optimisation history, parameter importances, parallel coordinates, slices
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

from dogbreed.config.overrides import TUNE_ONLY_KEYS, format_override, without_keys
from dogbreed.config.secrets import mask_secrets
from dogbreed.files import write_text_atomic

if TYPE_CHECKING:  # optuna is the tune extra; a SageMaker tuning job's results are written without it
    import optuna

log = logging.getLogger(__name__)

# Command-line overrides of the tune run that are not train settings (the best values replace the tuned ones).
NOT_FOR_TRAIN = (*TUNE_ONLY_KEYS, "hydra", "run_dir", "task_name")


def train_overrides(tune_overrides: Sequence[str], best_params: dict) -> list[str]:
    """The tune run's own train overrides (data, model, experiment...) followed by the best values."""
    kept = without_keys(tune_overrides, NOT_FOR_TRAIN, also=best_params)
    return kept + [format_override(name, value) for name, value in best_params.items()]


def write_best(study: optuna.Study, out_dir: Path, tune_overrides: Sequence[str] = ()) -> Path | None:
    """best_overrides.txt and best_params.yaml; None when no trial has completed."""
    try:
        best = study.best_trial
    except ValueError:
        log.warning("no trial of study %s completed: no best parameters to write", study.study_name)
        return None
    return write_best_files(
        out_dir,
        study_name=study.study_name,
        direction=study.direction.name.lower(),
        trial=best.number,
        value=best.value,
        params=best.params,
        user_attrs=best.user_attrs,
        overrides=train_overrides(tune_overrides, best.params),
    )


def write_best_files(
    out_dir: Path,
    *,
    study_name: str,
    direction: str,
    trial: Any,
    value: Any,
    params: dict,
    user_attrs: dict,
    overrides: list[str],
) -> Path:
    """best_overrides.txt and best_params.yaml, the one layout of a local study and a SageMaker tuning job
    (there `study_name` is the tuning job and `trial` its best training job). A credential typed in an
    override is masked: the file holds `${oc.env:NAME}` references as typed, never a secret."""
    overrides = mask_secrets(overrides)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Written whole or not at all: a study killed here leaves the previous best files intact.
    path = write_text_atomic(out_dir / "best_overrides.txt", "\n".join(overrides) + "\n")
    summary = {
        "study_name": study_name,
        "direction": direction,
        "trial": trial,
        "value": value,
        "params": params,
        "user_attrs": user_attrs,
        "overrides": overrides,
    }
    write_text_atomic(out_dir / "best_params.yaml", OmegaConf.to_yaml(OmegaConf.create(summary)))
    return path


def write_trials_csv(study: optuna.Study, out_dir: Path) -> Path:
    return write_text_atomic(out_dir / "trials.csv", study.trials_dataframe().to_csv(index=False))


def _save(plot, path: Path) -> None:
    import matplotlib.pyplot as plt

    axes = plot
    first = axes.flat[0] if hasattr(axes, "flat") else axes  # slice plots return an array of axes
    figure = first.figure
    figure.set_size_inches(max(8, figure.get_size_inches()[0]), 6)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


def write_plots(study: optuna.Study, out_dir: Path) -> list[Path]:
    """PNG files of the study; a plot that needs more completed trials than there are is left out."""
    import matplotlib
    import optuna

    matplotlib.use("Agg")
    from optuna.importance import PedAnovaImportanceEvaluator
    from optuna.visualization import matplotlib as vis

    plots_dir = out_dir / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    n_completed = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    makers = {
        "optimization_history": lambda: vis.plot_optimization_history(study),
        "intermediate_values": lambda: vis.plot_intermediate_values(study),
        "parallel_coordinate": lambda: vis.plot_parallel_coordinate(study),
        "slice": lambda: vis.plot_slice(study),
        # PED-ANOVA needs no scikit-learn (the default fANOVA evaluator does).
        "param_importances": lambda: vis.plot_param_importances(
            study, evaluator=PedAnovaImportanceEvaluator()
        ),
    }
    written = []
    for name, make in makers.items():
        if n_completed < (2 if name == "param_importances" else 1):
            log.info("plot %s skipped: needs more completed trials than %d", name, n_completed)
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                plot = make()
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            log.warning("plot %s skipped: %s", name, exc)
            continue
        path = plots_dir / f"{name}.png"
        _save(plot, path)
        written.append(path)
    return written


def describe_best(study: optuna.Study) -> str:
    try:
        best = study.best_trial
    except ValueError:
        return f"study {study.study_name}: no completed trial"
    params = "\n".join(f"  {format_override(k, v)}" for k, v in best.params.items())
    return (
        f"best trial {best.number} of study {study.study_name}: value={best.value:.6f}\n{params}\n"
        f"  run directory: {best.user_attrs.get('run_dir')}"
    )
