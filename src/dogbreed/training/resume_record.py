"""Resume a run from its own record: `python train.py resume=<run>` (or `hydra.run.dir=<run> ckpt_path=last`).

Hydra composes the command line before train.py's main runs, so a resume given without the run's overrides
would compose the defaults: another model, another data set. `resume_argv` runs first and spells the resume
out from what the run recorded (`read_run_record`): its overrides as typed, its folder, `ckpt_path=last`.

- An override that contradicts the record is refused in one line naming both values.
- Those in MAY_CHANGE may differ: they change how long training goes on or how it is shown, never what the
  finished epochs were. The resume records them in the run's resumes.jsonl (fit writes it).
- A finished run (complete metrics.json) is never written again: resumed as it was there is nothing to do,
  and more epochs go to a new folder, `resume=<run> hydra.run.dir=<new folder>`, which starts from the run's
  last checkpoint with the run's overrides.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dogbreed.config.errors import ConfigValueError
from dogbreed.config.overrides import override_key
from dogbreed.config.secrets import MASK
from dogbreed.tracking.run_record import MANIFEST_FILE, RunRecord, read_run_record

# The settings a resume may change (docs/training.md#resume): how many epochs, what is printed, how often
# last.ckpt is refreshed, how many loader processes this machine runs.
MAY_CHANGE = (
    "trainer.max_epochs",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "checkpoint_every_minutes",
    "data.num_workers",
)
# Keys that say where and how to resume, not how the run trains.
RESUME_KEYS = ("resume", "hydra.run.dir", "ckpt_path")
_UNSET = object()


def _value(override: str) -> Any:
    """The value an override sets, as Hydra reads it (`1e-3` and `0.001` are one value)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides([override])[0].value()


def recorded_value(record: RunRecord, key: str) -> Any:
    """What the run recorded for `key`: its override's value, else the value in its config.yaml (a scalar);
    _UNSET when neither says."""
    typed = {override_key(o): o for o in record.overrides}
    if key in typed:
        return _value(typed[key])
    node: Any = record.config or {}
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _UNSET
        node = node[part]
    return _UNSET if isinstance(node, dict | list) else node


def _describe(record: RunRecord, key: str) -> str:
    value = recorded_value(record, key)
    if value is _UNSET:
        return f"{key} left to its recipe (overrides: {' '.join(record.overrides) or 'none'})"
    return f"{key}={value}"


def resume_target(args: Sequence[str]) -> Path | None:
    """The run folder `args` resume: `resume=<run>`, or `hydra.run.dir=<run> ckpt_path=last` where a run is
    recorded; None for any other command line."""
    given = {override_key(a): a.partition("=")[2] for a in args if "=" in a}
    if "resume" in given:
        return Path(given["resume"])
    run = given.get("hydra.run.dir")
    if given.get("ckpt_path") == "last" and run and (Path(run) / MANIFEST_FILE).is_file():
        return Path(run)
    return None


def changes(record: RunRecord, given: Sequence[str], run: Path) -> list[str]:
    """The overrides of `given` that change the record: those in MAY_CHANGE; any other is refused."""
    changed = []
    masked = {override_key(o) for o in record.overrides if MASK in o}
    for override in given:
        key = override_key(override)
        if key in masked:  # a credential the record masked: given again, it is the run's own value
            changed.append(override)
            continue
        if override.startswith("~") or recorded_value(record, key) != _value(override):
            if key not in MAY_CHANGE and not key.startswith("hydra."):
                raise ConfigValueError(
                    f"resume={run}: {override} contradicts the run's recorded {_describe(record, key)}; "
                    f"drop it to resume the run as recorded (a resume may change {', '.join(MAY_CHANGE)} "
                    "only), or start a new run"
                )
            changed.append(override)
    return changed


def resume_argv(args: Sequence[str]) -> list[str] | None:
    """train.py's overrides with a resume spelled out from the run's record; `args` unchanged when they
    resume nothing; None when the run is finished and nothing is left to do (said on stderr)."""
    run = resume_target(args)
    if run is None or any(a.startswith("-") for a in args):  # Hydra's own flags (--cfg, -m): Hydra's to read
        return list(args)
    record = read_run_record(run)
    if record.manifest is None:
        raise ConfigValueError(
            f"resume={run}: no run is recorded there (no {MANIFEST_FILE}): name a run's folder"
        )
    given = {override_key(a): a for a in args}
    target = Path(given["hydra.run.dir"].partition("=")[2]) if "hydra.run.dir" in given else run
    new_folder = target.resolve() != run.resolve()
    others = [a for a in args if override_key(a) not in RESUME_KEYS]
    changed = changes(record, others, run)
    if record.finished and not new_folder:
        more = [o for o in changed if override_key(o) == "trainer.max_epochs"]
        if more:
            raise ConfigValueError(
                f"resume={run}: the run is finished; {more[0]} would write over its record: train on in a "
                f"new folder with resume={run} hydra.run.dir=<new folder> {more[0]}"
            )
        print(f"{run} is a finished run: nothing to resume; its files are kept as they are", file=sys.stderr)
        return None
    kept = [o for o in record.overrides if override_key(o) not in RESUME_KEYS]
    changed_keys = {override_key(o) for o in changed}
    masked = next((o for o in kept if MASK in o and override_key(o) not in changed_keys), None)
    if masked is not None:
        raise ConfigValueError(
            f"resume={run}: the run's {override_key(masked)} was recorded masked ({masked}): give it again "
            "on the command line (a run started with a reference, ${oc.env:NAME}, records that instead)"
        )
    ckpt = given.get("ckpt_path") or (
        f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}" if new_folder else "ckpt_path=last"
    )
    where = [f"hydra.run.dir={target}", ckpt]
    if not new_folder:
        where.append("hydra.output_subdir=null")  # the run's .hydra/ stays that of its first start
    return [*(o for o in kept if override_key(o) not in changed_keys), *changed, *where]
