"""Which engine serves a model directory: an ONNX runtime on the optimised artifact, or torch.

`auto` takes the fastest runtime installed here (dogbreed.runtimes.RUNTIMES order) on the best version the
model directory holds (INT8, then fp32), and falls back to torch with one log line saying why when no
runtime is installed or no version is fit to serve. A version is fit to serve when model.json records it as
kept, its file is the one recorded (sha256), it was made from the weights beside it, and its recorded
parity figures are within their recorded limits. Naming a runtime (`openvino`, `onnxruntime`) makes any of
these an error instead of a fallback.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from dogbreed.export import WEIGHTS_FILE, ModelDescription, ModelDirError
from dogbreed.inference_artifact import ARTIFACTS_KEY, Parity, ParityLimits, sha256_of
from dogbreed.runtimes import RUNTIMES, RuntimeUnavailable, import_runtime

log = logging.getLogger(__name__)

ENGINES = ("auto", *RUNTIMES, "torch")
PREFERRED_PRECISIONS = ("int8", "fp32")


class EngineUnavailable(ModelDirError):
    """The engine asked for cannot serve this model directory here; the message says why."""


@dataclass(frozen=True)
class EngineChoice:
    runtime: str  # "openvino", "onnxruntime" or "torch"
    artifact: Path | None = None
    precision: str = "fp32"
    reason: str = ""  # why torch, when auto fell back to it


def artifact_problem(model_dir: Path, entry: dict, weights_sha: str) -> str | None:
    """Why this artifact record must not be served, or None when it may."""
    if "refused" in entry:
        return f"refused at export ({entry['refused']})"
    path = model_dir / str(entry.get("file", ""))
    if not entry.get("file") or not path.is_file():
        return f"{path} is missing"
    if entry.get("weights_sha256") != weights_sha:
        return f"{path.name} was made from other weights than {WEIGHTS_FILE} (exported again since?)"
    limits = ParityLimits(**entry["limits"])
    for runtime, figures in (entry.get("parity") or {}).items():
        why = Parity(**figures).refusal(limits)
        if why:
            return f"{path.name} disagrees with the PyTorch network on {runtime}: {why}"
    if not entry.get("parity"):
        return f"{path.name} has no parity figures"
    if sha256_of(path) != entry.get("sha256"):
        return f"{path} is not the file that was checked (sha256 differs)"
    return None


def servable_artifacts(
    model_dir: Path, description: ModelDescription
) -> tuple[list[tuple[str, Path]], list[str]]:
    """The versions fit to serve, best first, as (precision, path); and why each other one is not."""
    record = description.config.get(ARTIFACTS_KEY) or {}
    if not record:
        return [], ["the model directory has no optimised artifact (python -m dogbreed.export optimize ...)"]
    weights_sha = sha256_of(model_dir / WEIGHTS_FILE)
    servable, problems = [], []
    for precision in PREFERRED_PRECISIONS:
        if precision not in record:
            continue
        why = artifact_problem(model_dir, record[precision], weights_sha)
        if why:
            problems.append(f"{precision}: {why}")
        else:
            servable.append((precision, model_dir / record[precision]["file"]))
    return servable, problems


def choose_engine(
    model_dir: str | Path, description: ModelDescription, requested: str = "auto"
) -> EngineChoice:
    """The engine to serve `model_dir` with, as `requested` (one of ENGINES)."""
    if requested not in ENGINES:
        raise ValueError(f"engine={requested} is not one of {', '.join(ENGINES)}")
    if requested == "torch":
        return EngineChoice("torch")
    model_dir = Path(model_dir)
    candidates = RUNTIMES if requested == "auto" else (requested,)
    installed, missing = [], []
    for runtime in candidates:
        try:
            import_runtime(runtime)
            installed.append(runtime)
        except RuntimeUnavailable as exc:
            missing.append(str(exc))
    servable, problems = servable_artifacts(model_dir, description) if installed else ([], [])
    if installed and servable:
        precision, path = servable[0]
        for problem in problems:  # a better version was refused: say so once, even when serving another
            log.warning("not serving %s", problem)
        return EngineChoice(installed[0], path, precision)
    reason = "; ".join(missing if not installed else problems)
    if requested != "auto":
        raise EngineUnavailable(f"engine={requested} cannot serve {model_dir}: {reason}")
    log.warning("engine=auto: serving with torch because %s", reason)
    return EngineChoice("torch", reason=reason)
