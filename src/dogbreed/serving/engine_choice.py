"""Which engine serves a model directory: an ONNX runtime on the optimised artifact, or torch.

`auto` takes the fastest (runtime, version) pair (RANKING) that is installed here and fit to serve, and
falls back to torch with one log line saying why when none is. A version is fit to serve with a runtime
when model.json records it as kept and checked with that runtime, its parity figures there are within
their recorded limits, its file is the one checked (sha256) and it was made from the weights beside it.
Naming a runtime (`openvino`, `onnxruntime`) makes a failure an error instead of a fallback.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from dogbreed.modeldir.artifact import Parity, ParityLimits, sha256_of
from dogbreed.modeldir.format import ARTIFACTS_KEY, WEIGHTS_FILE, ModelDescription, ModelDirError
from dogbreed.modeldir.runtimes import RUNTIMES, RuntimeUnavailable, import_runtime

log = logging.getLogger(__name__)

ENGINES = ("auto", *RUNTIMES, "torch")
# (runtime, version) pairs, fastest first by measurement (docs/serving-performance.md); auto takes the
# first one installed here and fit to serve.
RANKING = (("openvino", "int8"), ("onnxruntime", "int8"), ("openvino", "fp32"), ("onnxruntime", "fp32"))


class EngineUnavailable(ModelDirError):
    """The engine asked for cannot serve this model directory here; the message says why."""


@dataclass(frozen=True)
class EngineChoice:
    runtime: str  # "openvino", "onnxruntime" or "torch"
    artifact: Path | None = None
    precision: str = "fp32"
    reason: str = ""  # why torch, when auto fell back to it


def artifact_problem(model_dir: Path, entry: dict, runtime: str, weights_sha: str) -> str | None:
    """Why `runtime` must not serve this version of the artifact, or None when it may."""
    refused = entry.get("refused") or {}
    if runtime in refused:
        return f"refused for {runtime} at export ({refused[runtime]})"
    path = model_dir / str(entry.get("file", ""))
    if not entry.get("file") or not path.is_file():
        return f"{path} is missing"
    if entry.get("weights_sha256") != weights_sha:
        return f"{path.name} was made from other weights than {WEIGHTS_FILE} (exported again since?)"
    figures = (entry.get("parity") or {}).get(runtime)
    if figures is None:
        return f"{path.name} was never checked with {runtime} (run python -m dogbreed.cli.optimize here)"
    why = Parity(**figures).refusal(ParityLimits(**entry["limits"]))
    if why:
        return f"{path.name} disagrees with the PyTorch network on {runtime}: {why}"
    return None


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
    installed, problems = [], []
    for runtime in candidates:
        try:
            import_runtime(runtime)
            installed.append(runtime)
        except RuntimeUnavailable as exc:
            problems.append(str(exc))
    record = description.config.get(ARTIFACTS_KEY) or {}
    if installed and not record:
        problems.append("the model directory has no optimised artifact (python -m dogbreed.cli.optimize)")
    if installed and record:
        weights_sha = sha256_of(model_dir / WEIGHTS_FILE)
        checked: dict[str, bool] = {}  # file sha256 checked once per file
        for runtime, precision in RANKING:
            if runtime not in installed or precision not in record:
                continue
            entry = record[precision]
            why = artifact_problem(model_dir, entry, runtime, weights_sha)
            if why is None and entry["file"] not in checked:
                checked[entry["file"]] = sha256_of(model_dir / entry["file"]) == entry.get("sha256")
            if why is None and not checked[entry["file"]]:
                why = f"{model_dir / entry['file']} is not the file that was checked (sha256 differs)"
            if why is None:
                for problem in problems:  # a faster pair was refused: say so once, even when serving
                    log.warning("not serving %s", problem)
                return EngineChoice(runtime, model_dir / entry["file"], precision)
            problems.append(f"{precision} on {runtime}: {why}")
    reason = "; ".join(problems)
    if requested != "auto":
        raise EngineUnavailable(f"engine={requested} cannot serve {model_dir}: {reason}")
    log.warning("engine=auto: serving with torch because %s", reason)
    return EngineChoice("torch", reason=reason)
