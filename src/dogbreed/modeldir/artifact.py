"""The optimised inference artifact of an exported model: the trained network as ONNX and, where chosen, an
INT8 version calibrated on training images. Each is checked against the fp32 PyTorch network on held-out
images, with every runtime installed, and kept only when it agrees within the parity limits.

model/
  model.onnx        fp32 graph, dynamic batch
  model.int8.onnx   the same graph with static INT8 quantisation (QDQ: per-channel weights, per-tensor
                    activations), readable by ONNX Runtime and OpenVINO alike
  model.json        "artifacts": per version its file, sha256, the weights it was made from, the parity
                    figures per runtime and the limits they were checked against; a refused version is
                    listed with the reason and no file

Needs the `onnx` extra (onnx, onnxruntime); OpenVINO, when installed, is checked too.

    python -m dogbreed.cli.optimize <model_dir> --calibration <image folder> [--quantize int8|none]
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from dogbreed.hardware import available_cpus
from dogbreed.modeldir.format import INT8_FILE, ONNX_FILE, WEIGHTS_FILE
from dogbreed.modeldir.onnx_conversion import ArtifactError, export_onnx, quantize_int8
from dogbreed.modeldir.predictor import BreedModel
from dogbreed.modeldir.reader import load_model
from dogbreed.modeldir.runtimes import RuntimeUnavailable, available_runtimes, import_runtime, open_session
from dogbreed.modeldir.writer import record_artifacts

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": ONNX_FILE, "int8": INT8_FILE}
QUANTIZE_CHOICES = ("int8", "none")


@dataclass(frozen=True)
class ParityLimits:
    max_prob_diff: float
    min_top1_agreement: float


DEFAULT_LIMITS = {"fp32": ParityLimits(1e-3, 0.99), "int8": ParityLimits(0.25, 0.97)}


@dataclass(frozen=True)
class Parity:
    """How a version's probabilities compare with the fp32 PyTorch network's on the same inputs."""

    max_prob_diff: float
    mean_prob_diff: float
    top1_agreement: float
    images: int

    @classmethod
    def measure(cls, reference: np.ndarray, probabilities: np.ndarray) -> Parity:
        diff = np.abs(reference - probabilities)
        agree = reference.argmax(axis=1) == probabilities.argmax(axis=1)
        return cls(float(diff.max()), float(diff.mean()), float(agree.mean()), len(reference))

    def refusal(self, limits: ParityLimits) -> str | None:
        """Why these figures fall outside `limits`, or None when they are within."""
        problems = []
        if not self.max_prob_diff <= limits.max_prob_diff:
            problems.append(f"max |Δprob| {self.max_prob_diff:.4g} > {limits.max_prob_diff:g}")
        if not self.top1_agreement >= limits.min_top1_agreement:
            problems.append(f"top-1 agreement {self.top1_agreement:.4f} < {limits.min_top1_agreement:g}")
        return "; ".join(problems) or None


@dataclass(frozen=True)
class ArtifactSettings:
    """The settings of the optimised artifact, and the one home of their defaults: conf/train.yaml's onnx:
    node repeats them (a test keeps the two equal) and `python -m dogbreed.cli.optimize` offers them."""

    quantize: str = "int8"
    calibration_size: int = 300
    parity_size: int = 100
    limits: dict[str, ParityLimits] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    seed: int = 0

    def __post_init__(self) -> None:
        if self.quantize not in QUANTIZE_CHOICES:
            raise ValueError(f"quantize={self.quantize!r} is not one of {', '.join(QUANTIZE_CHOICES)}")

    @classmethod
    def from_config(cls, cfg) -> ArtifactSettings:
        """From the train config's `onnx` node (a mapping); a key it leaves out keeps its default."""
        defaults = cls()
        limits = dict(defaults.limits)
        for precision, values in (cfg.get("parity") or {}).items():
            limits[precision] = ParityLimits(
                float(values["max_prob_diff"]), float(values["min_top1_agreement"])
            )
        return cls(
            quantize=str(cfg.get("quantize", defaults.quantize)),
            calibration_size=int(cfg.get("calibration_size", defaults.calibration_size)),
            parity_size=int(cfg.get("parity_size", defaults.parity_size)),
            limits=limits,
            seed=int(cfg.get("seed", defaults.seed) or 0),
        )


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def image_files(folder: str | Path) -> list[Path]:
    """Every image file under `folder` (the extensions ImageFolder reads, as training), in a stable order."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError(f"{folder} is not a folder of images")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMG_EXTENSIONS and p.is_file())


def pick(paths: Sequence[str | Path], count: int, seed: int) -> list[Path]:
    """A seeded choice of `count` of `paths` (all of them when there are fewer)."""
    chosen = [Path(p) for p in paths]
    if len(chosen) <= count:
        return chosen
    return sorted(random.Random(seed).sample(chosen, count))


def batches(model: BreedModel, paths: Sequence[Path], size: int) -> Iterator[np.ndarray]:
    """The images through the model's evaluation transform, `size` at a time: float32 NCHW."""
    for start in range(0, len(paths), size):
        yield model.preprocess(paths[start : start + size]).numpy()


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def check_parity(
    path: Path, inputs: list[np.ndarray], reference: np.ndarray, runtimes: Sequence[str]
) -> dict[str, Parity]:
    """The version at `path` run by each runtime on `inputs`, compared with `reference` probabilities."""
    figures = {}
    for runtime in runtimes:
        session = open_session(runtime, path, available_cpus())
        probs = np.concatenate([softmax(session(batch)) for batch in inputs])
        figures[runtime] = Parity.measure(reference, probs)
        del session
    return figures


@dataclass
class Reference:
    """The fp32 PyTorch network's answers on the parity images: what every version is checked against."""

    model: BreedModel
    paths: list[Path]
    inputs: list[np.ndarray]
    probabilities: np.ndarray
    weights_sha256: str

    @classmethod
    def of(
        cls, model_dir: Path, parity_images: Sequence[str | Path], settings: ArtifactSettings
    ) -> Reference:
        paths = pick(parity_images, settings.parity_size, settings.seed)
        if not paths:
            raise ArtifactError("no images to check the artifact against the PyTorch network")
        model = load_model(model_dir, device="cpu")
        inputs = list(batches(model, paths, 16))
        probabilities = np.concatenate([model.probabilities(torch.from_numpy(b)).numpy() for b in inputs])
        return cls(model, paths, inputs, probabilities, sha256_of(model_dir / WEIGHTS_FILE))


def make_versions(
    reference: Reference, scratch: Path, calibration_images: Sequence[str | Path], settings: ArtifactSettings
) -> tuple[dict[str, Path], int]:
    """The ONNX file, and the INT8 one when asked, written into `scratch`; with how many calibration
    images the INT8 version was calibrated on."""
    model = reference.model
    staged = {"fp32": export_onnx(model.net, scratch / ONNX_FILE, model.preprocessing.crop_size)}
    if settings.quantize != "int8":
        return staged, 0
    chosen = pick(calibration_images, settings.calibration_size, settings.seed)
    if not chosen:
        raise ArtifactError("quantize=int8 needs calibration images; none were found")
    staged["int8"] = quantize_int8(staged["fp32"], scratch / INT8_FILE, model, chosen)
    return staged, len(chosen)


def judge_version(
    precision: str, path: Path, reference: Reference, runtimes: Sequence[str], settings: ArtifactSettings
) -> dict:
    """The record of one version: its parity figures per runtime, and which runtimes refused it."""
    limits = settings.limits[precision]
    figures = check_parity(path, reference.inputs, reference.probabilities, runtimes)
    entry: dict = {
        "file": PRECISIONS[precision],
        "weights_sha256": reference.weights_sha256,
        "parity": {rt: asdict(p) for rt, p in figures.items()},
        "limits": asdict(limits),
    }
    refused = {rt: why for rt, p in figures.items() if (why := p.refusal(limits))}
    for runtime, why in refused.items():
        log.warning(
            "%s version refused for %s: it disagrees with the PyTorch network beyond the parity limits (%s); "
            "%s never serves it",
            precision,
            runtime,
            why,
            runtime,
        )
    if refused:
        entry["refused"] = refused
    if len(refused) == len(figures):  # no runtime may serve it: not kept at all
        entry.pop("file")
    return entry


def keep_version(entry: dict, staged: Path, target: Path) -> None:
    """Move a version some runtime may serve into the model folder; remove one none may serve."""
    if "file" not in entry:
        target.unlink(missing_ok=True)
        return
    entry["sha256"] = sha256_of(staged)
    os.chmod(staged, 0o644)
    os.replace(staged, target)


def optimize_model_dir(
    model_dir: str | Path,
    calibration_images: Sequence[str | Path],
    parity_images: Sequence[str | Path],
    settings: ArtifactSettings = ArtifactSettings(),
    sources: dict[str, str] | None = None,
) -> dict:
    """Write model.onnx (and model.int8.onnx) into an exported model directory and record them, with their
    parity figures, in model.json. A version outside its limits is not kept: its record says why, and
    serving never runs it. Returns the record; ArtifactError when nothing could be checked."""
    model_dir = Path(model_dir)
    runtimes = available_runtimes()
    if "onnxruntime" not in runtimes:
        import_runtime("onnxruntime")  # raises RuntimeUnavailable naming the extra
    reference = Reference.of(model_dir, parity_images, settings)
    sources = sources or {}
    record: dict = {}
    with tempfile.TemporaryDirectory(dir=model_dir, prefix=".artifact-") as scratch:
        staged, calibrated = make_versions(reference, Path(scratch), calibration_images, settings)
        for precision, path in staged.items():
            entry = judge_version(precision, path, reference, runtimes, settings)
            entry["parity_images"] = {"count": len(reference.paths), "source": sources.get("parity", "")}
            if precision == "int8":
                entry["calibration_images"] = {"count": calibrated, "source": sources.get("calibration", "")}
            keep_version(entry, path, model_dir / PRECISIONS[precision])
            record[precision] = entry
    if "int8" not in record:
        # Made from other weights: never left beside a record that does not describe it.
        (model_dir / INT8_FILE).unlink(missing_ok=True)
    record_artifacts(model_dir, record)
    return record


def summary(record: dict) -> str:
    """One line per version and runtime: its figures, and whether that runtime may serve it."""
    lines = []
    for precision, entry in record.items():
        refused = entry.get("refused") or {}
        for runtime, p in entry["parity"].items():
            verdict = f"REFUSED ({refused[runtime]})" if runtime in refused else "kept"
            lines.append(
                f"{precision} on {runtime}: {verdict}; max |Δprob| {p['max_prob_diff']:.4g}, top-1 agreement "
                f"{p['top1_agreement']:.4f} on {p['images']} images"
            )
    return "\n".join(lines)


def not_kept(record: dict) -> list[str]:
    """The versions no runtime may serve."""
    return [precision for precision, entry in record.items() if "file" not in entry]


def split_images(datamodule, split: str) -> list[Path]:
    """The image files of one split of a (feature or image) data module."""
    images = getattr(datamodule, "images", datamodule)  # a feature-cache module wraps the image one
    dataset = images.datasets.get(split)
    return [Path(path) for path, _ in dataset.samples] if dataset is not None else []


def add_artifact_after_training(model_dir: str | Path, cfg, datamodule) -> dict | None:
    """fit()'s export step: calibrate on training images, check on validation images. The model is already
    exported whole; a missing extra or a failure here is logged, never lost training."""
    settings = ArtifactSettings.from_config(cfg)
    sources = {"calibration": "training split", "parity": "validation split"}
    try:
        record = optimize_model_dir(
            model_dir, split_images(datamodule, "train"), split_images(datamodule, "valid"), settings, sources
        )
    except (ArtifactError, RuntimeUnavailable) as exc:
        log.warning("optimised inference artifact skipped (serving will use torch): %s", exc)
        return None
    except Exception:
        log.exception("optimised inference artifact failed (the model is exported; serving will use torch)")
        return None
    for line in summary(record).splitlines():
        log.info("inference artifact %s", line)
    return record
