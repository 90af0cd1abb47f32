"""The trained network as ONNX, and its INT8 version calibrated on images (ONNX Runtime's quantiser).

dogbreed.modeldir.artifact decides which versions a model directory keeps (parity with PyTorch, model.json);
this module only makes them. Needs the `onnx` extra (onnx, onnxruntime).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from dogbreed.modeldir.predictor import BreedModel

log = logging.getLogger(__name__)

OPSET = 17
# Histogram calibration keeps every calibrated tensor of the images it is fed before it folds them into
# histograms: it is fed one batch at a time, so memory stays bounded whatever the calibration size.
CALIBRATION_BATCH = 16


class ArtifactError(RuntimeError):
    """The artifact cannot be made (a missing extra, no images) or was refused; the message says which."""


def export_onnx(net: torch.nn.Module, path: str | Path, crop_size: int) -> Path:
    """The network in eval mode as ONNX with a dynamic batch dimension (BatchNorm folded by the exporter)."""
    try:
        import onnx  # noqa: F401  (torch.onnx needs it; say so in our words)
    except ImportError as exc:
        raise ArtifactError("exporting ONNX needs the onnx extra: pip install 'dogbreed[onnx]'") from exc
    net = net.eval().float().cpu().to(memory_format=torch.contiguous_format)
    example = torch.zeros(1, 3, crop_size, crop_size)
    # The TorchScript-based exporter needs only `onnx`; the dynamo-based one would add onnxscript.
    torch.onnx.export(
        net,
        (example,),
        str(path),
        dynamo=False,
        opset_version=OPSET,
        input_names=["images"],
        output_names=["logits"],
        dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
    )
    return Path(path)


def quantize_int8(onnx_path: Path, out_path: Path, model: BreedModel, images: Sequence[Path]) -> Path:
    """Static INT8 (QDQ) with ONNX Runtime's quantiser, activation ranges calibrated on `images`.

    Only convolutions are quantised, and not the first one: the classifier's logits and the stem, which
    sees the raw image, stay fp32. Quantising them flipped more top-1 answers than all the other layers
    together on a trained ResNet50, for a few percent of the work. Each activation's range is the one whose
    8-bit histogram loses the least information (entropy calibration): of the methods compared on a trained
    ResNet50 it agreed most often with fp32, also on photos unlike the calibration images (figures:
    docs/serving-performance.md)."""
    try:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    except ImportError as exc:
        raise ArtifactError("INT8 calibration needs the onnx extra: pip install 'dogbreed[onnx]'") from exc
    reader = calibration_reader(model, images)
    stem = first_convolution(onnx_path)
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".calibration-") as scratch:
        # The quantiser writes its augmented copy of the graph next to the model unless told otherwise.
        with working_directory(scratch), quantiser_chatter_at_debug():
            quantize_static(
                str(onnx_path),
                str(out_path),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                op_types_to_quantize=["Conv"],
                nodes_to_exclude=stem,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.Entropy,
                extra_options={
                    "WeightSymmetric": True,
                    "CalibStridedMinMax": 1,  # despite its name: any calibrator, fed one batch at a time
                },
            )
    return out_path


def first_convolution(onnx_path: Path) -> list[str]:
    """The name of the graph's first convolution (the stem), as a list for `nodes_to_exclude`."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return [node.name for node in graph.node if node.op_type == "Conv"][:1]


def calibration_reader(model: BreedModel, images: Sequence[Path]):
    """The quantiser's feed: batches of preprocessed images, one range of batches at a time (its strides)."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            size = CALIBRATION_BATCH
            self.groups = [images[i : i + size] for i in range(0, len(images), size)]
            self.set_range(0, len(self.groups))

        def __len__(self) -> int:
            return len(self.groups)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.feed = iter(self.groups[start_index:end_index])

        def get_next(self) -> dict[str, np.ndarray] | None:
            group = next(self.feed, None)
            return None if group is None else {"images": model.preprocess(group).numpy()}

    return Reader()


class _RootRecordsToDebug(logging.Filter):
    """Records that ONNX Runtime's quantiser logs on the root logger, moved to this module's debug log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "onnxruntime" not in record.pathname:
            return True
        log.debug("onnxruntime: %s", record.getMessage())
        return False


@contextlib.contextmanager
def quantiser_chatter_at_debug() -> Iterator[None]:
    """ONNX Runtime's quantiser prints its progress (a line per calibration batch, its histogram settings)
    and logs advice on the root logger (pre-process the model first: it is exported for this already).
    Both go to the debug log, so that a run prints the artifact's own lines only."""
    printed = io.StringIO()
    demote = _RootRecordsToDebug()
    logging.getLogger().addFilter(demote)  # the quantiser calls logging.warning(), on the root logger
    try:
        with contextlib.redirect_stdout(printed):
            yield
    finally:
        logging.getLogger().removeFilter(demote)
        for line in printed.getvalue().splitlines():
            if line.strip():
                log.debug("onnxruntime: %s", line)


@contextlib.contextmanager
def working_directory(path: str | Path) -> Iterator[None]:
    """Run the block in `path` (contextlib.chdir needs Python 3.11)."""
    cwd = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(cwd)
