"""The runtimes that run an exported ONNX graph on a CPU: OpenVINO and ONNX Runtime.

Each is an optional extra (`pip install 'dogbreed[openvino]'` or `'dogbreed[onnx]'`), imported only when a
session is opened, so torch-only installs never need them. A session takes a float32 NCHW batch and
returns the network's logits; export (parity checks) and serving use the same sessions, so the figures
written at export time describe what a server runs.
"""

from __future__ import annotations

import importlib
import threading
from pathlib import Path

import numpy as np

from dogbreed.config.extras import MODULE_EXTRAS

# Fastest first, by measurement on the CPUs the endpoints use (see the serving performance page).
RUNTIMES = ("openvino", "onnxruntime")
# The module each runtime is imported as (dogbreed.config.extras says which extra installs it).
RUNTIME_MODULES = {"openvino": "openvino", "onnxruntime": "onnxruntime"}


class RuntimeUnavailable(ImportError):
    """The runtime's package is not installed (or cannot be imported here)."""


def import_runtime(name: str):
    """The runtime's module, or RuntimeUnavailable saying which extra installs it."""
    if name not in RUNTIME_MODULES:
        raise ValueError(f"runtime {name!r} is not one of {', '.join(RUNTIMES)}")
    try:
        return importlib.import_module(RUNTIME_MODULES[name])
    except ImportError as exc:
        raise RuntimeUnavailable(
            f"{name} is not installed ({exc}); install it with pip install 'dogbreed[{runtime_extra(name)}]'"
        ) from exc


def runtime_extra(name: str) -> str:
    """The extra that installs runtime `name`: 'onnx' for onnxruntime, 'openvino' for openvino."""
    return MODULE_EXTRAS[RUNTIME_MODULES[name]]


def available_runtimes() -> list[str]:
    """The runtimes that import here, fastest first."""
    found = []
    for name in RUNTIMES:
        try:
            import_runtime(name)
        except RuntimeUnavailable:
            continue
        found.append(name)
    return found


class OnnxRuntimeSession:
    """ONNX Runtime's CPU execution provider with all graph optimisations, `threads` intra-op threads."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, threads: int):
        ort = import_runtime("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.version = ort.__version__

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, np.float32)})[0]


class OpenVinoSession:
    """OpenVINO's CPU plugin, tuned for latency with `threads` inference threads.

    The inference precision is pinned to f32: on CPUs with native bf16 OpenVINO would otherwise run the
    fp32 graph (and the INT8 graph's unquantised layers) in bf16, and answer differently from the figures
    checked at export. INT8 layers run in INT8 either way."""

    name = "openvino"

    def __init__(self, path: str | Path, threads: int, precision: str = "f32"):
        ov = import_runtime("openvino")
        core = ov.Core()
        config = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": threads,
            "NUM_STREAMS": 1,
            "INFERENCE_PRECISION_HINT": precision,
            # The model server runs several worker processes, each with its own session: pinned, they would
            # all pin their threads to the same first cores.
            "ENABLE_CPU_PINNING": False,
        }
        model = core.read_model(str(path))
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        # A batch of one, an endpoint's usual request, runs a second program compiled for that shape alone:
        # with every shape known ahead the plugin plans its kernels and buffers once, and runs faster than
        # the dynamic-batch program does at batch 1 (docs/serving-performance.md).
        single = model.clone()
        shape = single.input(0).get_partial_shape()
        shape[0] = 1
        single.reshape({single.input(0): shape})
        self.single_compiled = core.compile_model(single, "CPU", config)
        self.single_request = self.single_compiled.create_infer_request()
        self.version = ov.get_version()
        # One request runs at a time: the server's batcher has one inference thread, but a caller with
        # several threads must not interleave inputs on the shared request.
        self._lock = threading.Lock()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        request = self.single_request if len(batch) == 1 else self.request
        with self._lock:
            result = request.infer({0: np.ascontiguousarray(batch, np.float32)})
            return np.array(result[0], copy=True)  # the request reuses its output buffer


def open_session(runtime: str, path: str | Path, threads: int) -> OnnxRuntimeSession | OpenVinoSession:
    """A session of `runtime` ("openvino" or "onnxruntime") on the ONNX file at `path`."""
    if runtime == "openvino":
        return OpenVinoSession(path, threads)
    if runtime == "onnxruntime":
        return OnnxRuntimeSession(path, threads)
    raise ValueError(f"runtime {runtime!r} is not one of {', '.join(RUNTIMES)}")
