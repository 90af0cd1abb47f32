"""The model as a server runs it: loaded once, tuned for inference, fed decoded images in batches.

Both the local server and the SageMaker handler go through this class, so they answer alike. The network
runs in torch or, with `engine=auto|openvino|onnxruntime`, in an ONNX runtime on the model directory's
optimised artifact (dogbreed.serving.engine_choice says which); preprocessing is the same either way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from dogbreed.hardware import available_cpus
from dogbreed.modeldir.predictor import BreedModel
from dogbreed.modeldir.reader import load_model, read_model_description
from dogbreed.modeldir.runtimes import open_session
from dogbreed.serving.decoding import EncodedImage, decode_image
from dogbreed.serving.engine_choice import ENGINES, EngineChoice, choose_engine

OPTIMIZATIONS = ("none", "fuse", "bf16")
log = logging.getLogger(__name__)


def transform_encoded(
    images: Sequence[EncodedImage], transform: Callable[[Image.Image], torch.Tensor], draft_size: int | None
) -> torch.Tensor:
    """Decode and transform one image after the other: a request never holds more than one decoded
    full-size image, whatever its number of images. [N, 3, H, W]. The engine and the local server's
    preprocessing workers (serving/preprocess_pool.py) both call this."""
    # The decoded image is already upright RGB: the transform alone, no second EXIF pass.
    return torch.stack([transform(decode_image(image, draft_size)) for image in images])


def configure_threads(threads: int | None) -> int:
    """One intra-op thread per available CPU unless told otherwise; returns the count set."""
    threads = threads or available_cpus()
    torch.set_num_threads(threads)
    return threads


def fuse_conv_bn(net: nn.Module) -> nn.Module:
    """Fold each BatchNorm into the convolution before it (eval mode only): one kernel instead of two."""
    from torch.fx.experimental.optimization import fuse

    return fuse(net.eval(), inplace=False)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class OnnxNetwork:
    """An ONNX runtime session on the optimised artifact, answering probabilities like the torch path."""

    def __init__(self, choice: EngineChoice, threads: int):
        self.session = open_session(choice.runtime, choice.artifact, threads)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        logits = torch.from_numpy(self.session(batch.float().contiguous().numpy()))
        return torch.softmax(logits, dim=1)


class InferenceEngine:
    """A BreedModel ready to serve: channels_last, inference mode. `optimize=fuse` folds BatchNorm into the
    convolutions (same answers to ~1e-6); `bf16` also runs the network in bfloat16: faster on CPUs with
    native bf16 (AVX512-BF16, AMX) and on GPUs, probabilities within ~1e-2 of fp32; on CPUs without it,
    slower. `optimize` applies to the torch engine only: an ONNX runtime runs the artifact as exported.

    `engine` and `runtime` say what runs the network: "torch", "openvino" or "onnxruntime"."""

    def __init__(
        self,
        model: BreedModel,
        optimize: str = "fuse",
        choice: EngineChoice | None = None,
        threads: int | None = None,
    ):
        if optimize not in OPTIMIZATIONS:
            raise ValueError(f"optimize={optimize} is not one of {', '.join(OPTIMIZATIONS)}")
        self.model = model
        self.arch = model.arch
        self.class_names = model.class_names
        self.draft_size = model.draft_size  # JPEGs decoded as every inference path decodes them
        self.transform = model.transform
        self.crop_size = model.preprocessing.crop_size
        self.optimize = optimize
        self.model_dir: Path | None = None  # the folder it was loaded from (Grad-CAM reads its weights)
        self.choice = choice or EngineChoice("torch")
        self.runtime = self.choice.runtime
        self.onnx: OnnxNetwork | None = None
        if self.runtime != "torch":
            self.net = None
            self.onnx = OnnxNetwork(self.choice, threads or torch.get_num_threads())
            # torch is left with normalisation, softmax and top-k: one thread, so that its thread pool does
            # not wake up to fight the runtime's threads for the cores (docs/serving-performance.md).
            torch.set_num_threads(1)
            return
        net = model.net if optimize == "none" else fuse_conv_bn(model.net)
        dtype = torch.bfloat16 if optimize == "bf16" else torch.float32
        self.net = net.to(model.device, dtype, memory_format=torch.channels_last).eval()
        model.net = self.net  # keep one copy of the weights in memory, not the unfused one too

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        device: str = "auto",
        optimize: str = "fuse",
        engine: str = "torch",
        threads: int | None = None,
    ) -> InferenceEngine:
        """`engine` is one of ENGINES (torch unless told: the servers pass theirs, auto by default)."""
        if engine not in ENGINES:
            raise ValueError(f"engine={engine} is not one of {', '.join(ENGINES)}")
        if engine != "torch" and resolve_device(device).type != "cpu":
            log.info(
                "engine=%s: the network runs in torch on %s (the ONNX runtimes here are CPU-only)",
                engine,
                resolve_device(device),
            )
            choice = EngineChoice("torch")
        else:
            choice = choose_engine(model_dir, read_model_description(model_dir), engine)
        model = load_model(model_dir, device="cpu" if choice.runtime != "torch" else resolve_device(device))
        if choice.runtime != "torch":
            model.net = None  # the runtime holds its own copy of the weights; only preprocessing is needed
        engine = cls(model, optimize=optimize, choice=choice, threads=threads)
        engine.model_dir = Path(model_dir)
        return engine

    @property
    def name(self) -> str:
        """What runs the network, as logs and /stats report it: e.g. "openvino int8" or "torch fuse"."""
        return f"{self.runtime} {self.choice.precision}" if self.onnx else f"torch {self.optimize}"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def decode(self, images: Sequence[EncodedImage]) -> list[Image.Image]:
        return [decode_image(image, self.draft_size) for image in images]

    def preprocess_encoded(self, images: Sequence[EncodedImage]) -> torch.Tensor:
        """Decode and transform one image after the other: [N, 3, H, W] (see `transform_encoded`)."""
        return transform_encoded(images, self.transform, self.draft_size)

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """The model's own evaluation transform (resize, centre crop, normalise): [N, 3, H, W]."""
        return self.model.preprocess(images)

    @torch.inference_mode()
    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        if self.onnx is not None:
            return self.onnx(batch)
        return self.model.probabilities(batch)  # the exported model's own path, on the tuned network

    def predict_encoded(self, images: Sequence[EncodedImage]) -> torch.Tensor:
        """Decode, preprocess and run a list of checked images in one batch: probabilities [N, C]."""
        return self.probabilities(self.preprocess_encoded(images))

    def warm_up(self, max_batch_size: int = 1) -> None:
        """A forward pass at the serving size, so the first request does not pay for allocator set-up. An
        ONNX runtime prepares its kernels per batch size: it runs each size the batcher may send once."""
        sizes = range(1, max_batch_size + 1) if self.onnx is not None else (1,)
        for size in sizes:
            self.probabilities(torch.zeros(size, 3, self.crop_size, self.crop_size))
