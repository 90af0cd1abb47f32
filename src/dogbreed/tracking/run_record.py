"""The record of a run in its folder, written by this module only and read back by `read_run_record`.

  config.yaml    the run's config as every writer records it (`config_for_records`: `${oc.env:NAME}`
                 references kept as written, credentials masked)
  manifest.json  where the run came from (dogbreed.tracking.manifest), the overrides as typed among it
  metrics.json   the final metrics, once the run has finished
  resumes.jsonl  one line for each time the run was resumed: when, from which checkpoint, and the settings
                 that resume changed (those a resume may change, dogbreed.training.resume_record)

fit() writes config.yaml and manifest.json together once the data is checked, and metrics.json at the end. A
resumed run keeps its config.yaml and manifest.json as first written and appends a line to resumes.jsonl; a
finished run is never written again. Resume and attach read the record back through `read_run_record`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dogbreed.config.overrides import override_key
from dogbreed.config.secrets import config_for_records, mask_secrets
from dogbreed.files import write_text_atomic

CONFIG_FILE = "config.yaml"
MANIFEST_FILE = "manifest.json"
METRICS_FILE = "metrics.json"
RESUMES_FILE = "resumes.jsonl"
RECORD_FILES = (MANIFEST_FILE, CONFIG_FILE, METRICS_FILE)
# Keys every complete metrics.json holds; a run without them was not finished.
COMPLETE_METRICS = ("train/loss", "val/loss", "test/loss")


@dataclass(frozen=True)
class RunRecord:
    """What a run's folder says about it; each part None when its file is not (yet) there."""

    config: dict[str, Any] | None = None
    manifest: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    resumes: tuple[dict[str, Any], ...] = ()

    @property
    def overrides(self) -> list[str]:
        """The settings that made the run's config differ from the defaults, as typed: those it started with
        (manifest.json), each changed by the resumes that changed it (resumes.jsonl)."""
        merged = {override_key(str(o)): str(o) for o in (self.manifest or {}).get("overrides", [])}
        for resume in self.resumes:
            merged.update({override_key(str(o)): str(o) for o in resume.get("overrides", [])})
        return list(merged.values())

    @property
    def finished(self) -> bool:
        """The run wrote its complete metrics.json: it trained, tested and exported, and is never resumed."""
        return self.metrics is not None and all(key in self.metrics for key in COMPLETE_METRICS)


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


def append_run_resume(run_dir: str | Path, resume: Mapping[str, Any]) -> None:
    """One line of resumes.jsonl: a resume of the run, added without touching the files written before."""
    with (Path(run_dir) / RESUMES_FILE).open("a") as f:
        f.write(json.dumps(mask_secrets(dict(resume)), default=str) + "\n")


def read_run_record(run_dir: str | Path) -> RunRecord:
    """The record a run left in `run_dir`: config.yaml as written (references unresolved), manifest.json
    and metrics.json, each None when absent, and its resumes (resumes.jsonl)."""
    run_dir = Path(run_dir)
    config_file, manifest_file, metrics_file, resumes_file = (
        run_dir / n for n in (CONFIG_FILE, MANIFEST_FILE, METRICS_FILE, RESUMES_FILE)
    )
    config = (
        OmegaConf.to_container(OmegaConf.load(config_file), resolve=False) if config_file.is_file() else None
    )
    return RunRecord(
        config={str(k): v for k, v in config.items()} if isinstance(config, dict) else None,
        manifest=json.loads(manifest_file.read_text()) if manifest_file.is_file() else None,
        metrics=json.loads(metrics_file.read_text()) if metrics_file.is_file() else None,
        resumes=_read_lines(resumes_file),
    )


def _read_lines(path: Path) -> tuple[dict[str, Any], ...]:
    """The JSON objects of a JSON Lines file; a line cut short by a kill while appending is skipped."""
    lines = path.read_text().splitlines() if path.is_file() else []
    read = []
    for line in lines:
        try:
            read.append(json.loads(line))
        except ValueError:
            continue
    return tuple(item for item in read if isinstance(item, dict))


def remove_untrained_run(run_dir: str | Path) -> bool:
    """Remove the folder of a run that failed before it trained: one holding no checkpoint and no
    metrics.json (only Hydra's files, the log and the record of a start that came to nothing). True when
    removed. Call it only for a folder the run itself created: a folder that existed before is never removed.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or (run_dir / METRICS_FILE).exists() or next(run_dir.rglob("*.ckpt"), None):
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    return True
