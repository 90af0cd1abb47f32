"""The record of a run in its folder, written by this module only and read back by `read_run_record`.

  config.yaml    the run's config as every writer records it (`config_for_records`: `${oc.env:NAME}`
                 references kept as written, credentials masked)
  manifest.json  where the run came from (dogbreed.tracking.manifest), the overrides as typed among it
  metrics.json   the final metrics, once the run has finished

fit() writes config.yaml and manifest.json together once the data is checked (a resumed finished run writes
neither again), and metrics.json at the end; resume and attach read them back through `read_run_record`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dogbreed.config.secrets import config_for_records, mask_secrets
from dogbreed.files import write_text_atomic

CONFIG_FILE = "config.yaml"
MANIFEST_FILE = "manifest.json"
METRICS_FILE = "metrics.json"
RECORD_FILES = (MANIFEST_FILE, CONFIG_FILE, METRICS_FILE)


@dataclass(frozen=True)
class RunRecord:
    """What a run's folder says about it; each part None when its file is not (yet) there."""

    config: dict[str, Any] | None = None
    manifest: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None

    @property
    def overrides(self) -> list[str]:
        """The settings that made the run's config differ from the defaults, as typed."""
        return [str(o) for o in (self.manifest or {}).get("overrides", [])]


def new_run_record(cfg: DictConfig, manifest: Mapping[str, Any]) -> RunRecord:
    """The record of a run about to train with `cfg`: its config as recorded and its manifest, masked."""
    return RunRecord(config=config_for_records(cfg), manifest=mask_secrets(dict(manifest)))


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, default=str))


def write_run_record(run_dir: str | Path, record: RunRecord) -> None:
    """config.yaml and manifest.json of `record` (and metrics.json when it holds metrics) into `run_dir`."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if record.config is not None:
        write_text_atomic(run_dir / CONFIG_FILE, OmegaConf.to_yaml(OmegaConf.create(record.config)))
    if record.manifest is not None:
        _write_json(run_dir / MANIFEST_FILE, record.manifest)
    if record.metrics is not None:
        _write_json(run_dir / METRICS_FILE, record.metrics)


def write_run_metrics(run_dir: str | Path, metrics: Mapping[str, Any]) -> None:
    """metrics.json: the run's final metrics (its last file; a complete one marks a finished run)."""
    write_run_record(run_dir, RunRecord(metrics=dict(metrics)))


def read_run_record(run_dir: str | Path) -> RunRecord:
    """The record a run left in `run_dir`: config.yaml as written (references unresolved), manifest.json
    and metrics.json, each None when absent."""
    run_dir = Path(run_dir)
    config_file, manifest_file, metrics_file = (
        run_dir / n for n in (CONFIG_FILE, MANIFEST_FILE, METRICS_FILE)
    )
    config = (
        OmegaConf.to_container(OmegaConf.load(config_file), resolve=False) if config_file.is_file() else None
    )
    return RunRecord(
        config={str(k): v for k, v in config.items()} if isinstance(config, dict) else None,
        manifest=json.loads(manifest_file.read_text()) if manifest_file.is_file() else None,
        metrics=json.loads(metrics_file.read_text()) if metrics_file.is_file() else None,
    )
