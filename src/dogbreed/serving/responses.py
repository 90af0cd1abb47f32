"""The JSON answer: top-k breeds with names, indices and probabilities, and the full vector on request.

Options come from the Accept header's parameters (`application/json; topk=3; probabilities=true`),
which pass through SageMaker's InvokeEndpoint unchanged, or from the local server's query string.
`explain=gradcam` asks for a heat map of the top class besides (dogbreed.serving.explain adds it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from dogbreed.modeldir.format import display_name
from dogbreed.serving.decoding import parse_media_type
from dogbreed.serving.errors import BadRequestError, NotAcceptableError, shorten

JSON_ACCEPT = "application/json"
ACCEPTABLE = (JSON_ACCEPT, "application/*", "*/*", "")
DECIMALS = 6  # enough to rank 133 breeds; the same digits whichever server answered
EXPLANATIONS = ("gradcam",)
POSITIVE_INT = re.compile(r"[0-9]{1,9}")  # beyond any class count; `re` alone: \d matches other scripts


@dataclass(frozen=True)
class OutputOptions:
    topk: int = 5
    probabilities: bool = False
    explain: str | None = None  # one of EXPLANATIONS, or None: no explanation asked for


def _parse_positive_int(value: str, name: str) -> int:
    """ASCII digits only: int() also reads '+3', '3_0', ' 3' and other scripts' digits ('٣' is 3)."""
    if not POSITIVE_INT.fullmatch(value) or int(value) < 1:
        raise BadRequestError(f"{name}={shorten(value, 20)} must be a positive integer in ASCII digits")
    return int(value)


def _parse_bool(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", ""):
        return True
    if lowered in ("0", "false", "no"):
        return False
    raise BadRequestError(f"{name}={value!r} must be true or false")


def parse_output_options(
    accept: str | None, query: Mapping[str, str] | None = None, default_topk: int = 5
) -> OutputOptions:
    """Read k and the full-vector flag from Accept params, then the query (the query wins).

    An Accept list ("application/json, text/plain") is fine when one of its types is."""
    choices = [parse_media_type(part) for part in (accept or "").split(",")]
    media, params = next(((m, p) for m, p in choices if m in ACCEPTABLE), choices[0])
    if media not in ACCEPTABLE:
        raise NotAcceptableError(f"Accept {accept} is not supported; this model answers {JSON_ACCEPT}")
    merged = {**params, **{k.lower(): v for k, v in (query or {}).items()}}
    topk = default_topk
    for name in ("topk", "k"):
        if name in merged:
            topk = _parse_positive_int(merged[name], name)
    probabilities = (
        _parse_bool(merged["probabilities"], "probabilities") if "probabilities" in merged else False
    )
    explain = _parse_explain(merged.get("explain"))
    return OutputOptions(topk=topk, probabilities=probabilities, explain=explain)


def _parse_explain(value: str | None) -> str | None:
    lowered = (value or "").strip().lower()
    if lowered in ("", "none", "false", "0"):
        return None
    if lowered not in EXPLANATIONS:
        raise BadRequestError(f"explain={value!r} is not one of {', '.join(EXPLANATIONS)}")
    return lowered


def build_response(probs: torch.Tensor, class_names: list[str], options: OutputOptions) -> dict:
    """{"predictions": [{"topk": [{index, class_name, label, probability}, ...], "probabilities"?}]}."""
    k = min(options.topk, probs.shape[1])
    values, indices = probs.topk(k, dim=1)
    predictions = []
    for row, row_values, row_indices in zip(probs, values.tolist(), indices.tolist(), strict=True):
        entry: dict = {
            "topk": [
                {
                    "index": i,
                    "class_name": class_names[i],
                    "label": display_name(class_names[i]),
                    "probability": round(p, DECIMALS),
                }
                for p, i in zip(row_values, row_indices, strict=True)
            ]
        }
        if options.probabilities:
            entry["probabilities"] = [round(p, DECIMALS) for p in row.tolist()]
        predictions.append(entry)
    return {"predictions": predictions}


def encode_response(response: dict) -> str:
    return json.dumps(response)
