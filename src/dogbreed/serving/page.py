"""The page at / of the local server: people try the model with their own photos and see why it decided.

Plain HTML, CSS and JavaScript shipped in the package (serving/static/), no build step. It asks the same
POST /invocations as every other client, and two read-only routes besides: GET /model (what the model
is, from model.json and model_card.json) and GET /report (the evaluation report page of the model folder).
Every answer carries a Content-Security-Policy that lets the browser load nothing from any other host, so
the page works offline and behind a firewall, and nothing can be injected into it from elsewhere.
`server.page=false` leaves these routes out; the SageMaker handler never has them.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from dogbreed.modeldir.reader import read_model_description
from dogbreed.serving.errors import ServingError
from dogbreed.tracking.evaluation_page import REPORT_FILE
from dogbreed.tracking.model_card import read_card_data

STATIC = files("dogbreed.serving") / "static"
# The files the page is made of, and their types: nothing else under static/ is served.
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "page.css": "text/css; charset=utf-8",
    "page.js": "text/javascript; charset=utf-8",
}
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# The report is one self-contained file: its own inline style, images as data URLs, no script.
REPORT_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"


class NotFoundError(ServingError):
    status = 404


def asset(name: str) -> Response:
    headers = {"Content-Security-Policy": PAGE_POLICY, "Cache-Control": "no-cache"}
    return Response((STATIC / name).read_bytes(), media_type=ASSETS[name], headers=headers)


def model_summary(model_dir: Path, state: dict) -> dict:
    """What the page says about the model: model.json's architecture and classes, the model card's
    figures (None where the folder has no card), and the engine that serves it."""
    description = read_model_description(model_dir)
    card = read_card_data(model_dir)
    engine = state.get("engine")
    return {
        "title": card.get("title") or f"Image classifier: {description.arch}",
        "arch": description.arch,
        "num_classes": len(description.class_names),
        "test_accuracy": card.get("test_accuracy"),
        "test_top5_accuracy": card.get("test_top5_accuracy"),
        "created": card.get("created"),
        "engine": engine.name if engine is not None else None,
        "report": "report" if (model_dir / REPORT_FILE).is_file() else None,
    }


def add_page(app: FastAPI, model_dir: str | Path, state: dict) -> None:
    """Add GET /, /static/{name}, /model and /report to `app`; `state` is the app's, holding the engine."""
    model_dir = Path(model_dir)

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return asset("index.html")

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in ASSETS or name == "index.html":
            raise NotFoundError(f"/static/{name} is not a file of the page")
        return asset(name)

    @app.get("/model")
    async def model() -> JSONResponse:
        return JSONResponse(model_summary(model_dir, state))

    @app.get("/report", include_in_schema=False)
    async def report() -> Response:
        path = model_dir / REPORT_FILE
        if not path.is_file():
            raise NotFoundError(f"the model folder has no {REPORT_FILE}: it was exported without evaluation")
        headers = {"Content-Security-Policy": REPORT_POLICY, "Cache-Control": "no-cache"}
        return Response(path.read_bytes(), media_type="text/html; charset=utf-8", headers=headers)
