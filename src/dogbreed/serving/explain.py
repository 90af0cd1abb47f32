"""Grad-CAM heat maps in the answer, for requests that ask (`Accept: application/json; explain=gradcam`
or `?explain=gradcam`): both servers add them here, to the predictions they have already made.

The heat map is drawn with the model folder's torch network (weights.pt, fp32), whatever engine serves the
predictions: the ONNX runtimes compute no gradients, and a fused or bfloat16 network would draw a slightly
different map on each server. That network is loaded on the first request that asks (one more copy of the
weights in memory from then on, none before), and maps are drawn one request at a time: a burst of them
waits here, its images still counted by the server's admission limit, instead of running side by side.
Each prediction gets, for its top class:

    "gradcam": {"index", "class_name", "label", "png": <base64 PNG, RGBA>, "crop_fraction"}

The PNG covers the centred square the network sees, whose side is `crop_fraction` of the photo's shorter
side (the evaluation transform's resize and centre crop).
"""

from __future__ import annotations

import asyncio
import base64
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from dogbreed.model.gradcam import crop_fraction, gradcam, heatmap_png
from dogbreed.modeldir.format import display_name
from dogbreed.modeldir.predictor import BreedModel
from dogbreed.modeldir.reader import load_model

HEATMAP_SIDE = 112  # pixels of the PNG: the map has 7 x 7 cells at 224 px, upsampled smoothly


class Explainer:
    """Heat maps for one model folder, drawn one request at a time."""

    def __init__(self, model_dir: str | Path, device: str | torch.device = "cpu"):
        self.model_dir = Path(model_dir)
        self.device = torch.device(device)
        self._model: BreedModel | None = None
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def model(self) -> BreedModel:
        if self._model is None:
            self._model = load_model(self.model_dir, self.device)
        return self._model

    def add_heatmaps(self, response: dict, batch: torch.Tensor) -> dict:
        """Add "gradcam" to each of `response`'s predictions, for its top class; `batch` is the
        preprocessed images the predictions were made from, in the same order. Returns `response`."""
        predictions = response["predictions"]
        classes = [prediction["topk"][0]["index"] for prediction in predictions]
        with self._lock:
            model = self.model()
            cams = gradcam(model.net, batch, classes)
        side = min(HEATMAP_SIDE, model.preprocessing.crop_size)
        fraction = round(crop_fraction(model.preprocessing), 6)
        for prediction, index, cam in zip(predictions, classes, cams, strict=True):
            name = model.class_names[index]
            prediction["gradcam"] = {
                "index": index,
                "class_name": name,
                "label": display_name(name),
                "png": base64.b64encode(heatmap_png(cam, side)).decode("ascii"),
                "crop_fraction": fraction,
            }
        return response

    async def add_heatmaps_async(self, response: dict, batch: torch.Tensor) -> dict:
        """add_heatmaps off the event loop, on a thread of its own (so a waiting map holds no decoder)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="gradcam")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.add_heatmaps, response, batch)


_explainers: dict[tuple[Path, str], Explainer] = {}
_explainers_lock = threading.Lock()


def explainer_for(model_dir: str | Path | None, device: str | torch.device = "cpu") -> Explainer:
    """The one Explainer of a model folder in this process, for both servers (the SageMaker handler gets
    only the engine with each request, which knows the folder it was loaded from)."""
    if model_dir is None:
        raise ValueError("an engine not loaded from a model folder has no weights to draw a heat map with")
    key = (Path(model_dir).resolve(), str(device))
    with _explainers_lock:
        if key not in _explainers:
            _explainers[key] = Explainer(model_dir, device)
        return _explainers[key]
