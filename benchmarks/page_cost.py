"""What the page at / of the local server costs: the bytes it ships and how long a person waits; prints JSON.

serve/deploy.py runs in a process of its own and Chromium (as the tests drive it: tests/browser.py) opens
the page; run the script under `taskset` to hold server and browser to that many cores together.

- shipped_bytes: the bodies of every response while the page opens (the page, its CSS and JavaScript,
  /model), and what one answer adds (the JSON, with and without its heat map);
- page_ready_ms: from navigation to the model's description on screen;
- first_answer_ms: from choosing the photo to its bars on screen, with the heat map: the first request
  (the Grad-CAM network loads then) and the median of `--rounds` more; `answer_ms` likewise without it.

    taskset -c 0,1 python benchmarks/page_cost.py --photo dog.jpg [--model-dir runs/train/<run>/model]
    python benchmarks/page_cost.py --photo dog.jpg --model-dir ... --screenshots docs/   # the docs' images

Without --model-dir the network is a ResNet50 at 224 px with random weights and 133 classes (the cost does
not depend on the weights). The photo is read where it is, never copied.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "benchmarks"), str(ROOT)]

from load_test import local_server  # noqa: E402
from serve_latency import machine  # noqa: E402

from tests.browser import CHROMIUM_ARGS, chromium_path  # noqa: E402


def random_resnet50(folder: Path) -> Path:
    from dogbreed.data.preprocessing import preprocessing_for
    from dogbreed.model.network import build_network
    from dogbreed.modeldir.writer import export_model

    names = [f"{i:03d}.Breed_{i}" for i in range(1, 134)]
    return export_model(
        build_network("resnet50", len(names), None),
        folder / "model",
        arch="resnet50",
        class_names=names,
        preprocessing=preprocessing_for("resnet50", 224),
    )


def choose_and_wait(page, photo: Path, explain: bool) -> float:
    """Milliseconds from choosing `photo` to its bars on screen (a new result each time)."""
    if page.is_checked("#explain") != explain:
        page.click("#explain")
    done = page.locator(".result[data-state]").count()
    started = time.perf_counter()
    page.set_input_files("#photos", str(photo))
    page.locator(".result[data-state]").nth(done).wait_for(timeout=120_000)
    elapsed = 1000 * (time.perf_counter() - started)
    state = page.locator(".result").first.get_attribute("data-state")
    if state != "done":
        raise RuntimeError(f"the page showed an error: {page.locator('.result .error').first.inner_text()}")
    return elapsed


def shrink_png(png: bytes, path: Path) -> None:
    """A screenshot as a 64-colour PNG: a fraction of the bytes, the same look for flat page colours."""
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(64, dither=Image.Dither.NONE)
    image.save(path, optimize=True)


def measure(port: int, photo: Path, rounds: int, screenshots: Path | None) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 900, "height": 640})
        origin = f"http://127.0.0.1:{port}"
        shipped: dict[str, int] = {}  # path -> body bytes of its last response (data: URLs aside)

        def count(response) -> None:
            if response.url.startswith(origin):
                path = response.url[len(origin) :].split("?")[0]
                shipped[path] = int(response.headers.get("content-length", 0))

        page.on("response", count)
        started = time.perf_counter()
        page.goto(f"{origin}/")
        page.wait_for_selector("#model:not(:has-text('Reading'))")
        page_ready_ms = 1000 * (time.perf_counter() - started)
        opened = dict(shipped)
        first_answer = choose_and_wait(page, photo, explain=True)
        answer_with_map = shipped.get("/invocations")
        if screenshots:
            shrink_png(page.screenshot(), screenshots / "serving-page.png")
        with_map = [choose_and_wait(page, photo, explain=True) for _ in range(rounds)]
        without_map = [choose_and_wait(page, photo, explain=False) for _ in range(rounds)]
        answer_without_map = shipped.get("/invocations")
        if screenshots and page.is_visible("#report"):
            page.goto(f"{origin}/report")
            top = {"x": 0, "y": 0, "width": 900, "height": 1150}  # the charts and the gallery's first rows
            shrink_png(page.screenshot(full_page=True, clip=top), screenshots / "serving-report.png")
        browser.close()
    return {
        "shipped_bytes": {"page_total": sum(opened.values()), **opened},
        "answer_bytes": {"with_heat_map": answer_with_map, "without": answer_without_map},
        "page_ready_ms": round(page_ready_ms),
        "first_answer_ms": {
            "first_request": round(first_answer),
            "median": round(statistics.median(with_map)),
        },
        "answer_ms_without_heat_map": round(statistics.median(without_map)),
    }


def commit() -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return done.stdout.strip() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", required=True, type=Path, help="a photo (JPEG/PNG), read where it is")
    parser.add_argument("--model-dir", type=Path, help="an exported model; default: ResNet50, random weights")
    parser.add_argument("--rounds", type=int, default=5, help="answers timed after the first, each way")
    parser.add_argument(
        "--screenshots", type=Path, help="save serving-page.png (and serving-report.png) here"
    )
    args = parser.parse_args()
    if chromium_path() is None:
        raise SystemExit(
            "error: no Chromium to drive: apt-get install -y chromium (or set DOGBREED_CHROMIUM)"
        )
    with tempfile.TemporaryDirectory() as work:
        model_dir = args.model_dir or random_resnet50(Path(work))
        overrides = ["server.engine=torch"] if args.model_dir is None else []
        with local_server(model_dir, overrides, run_dir=Path(work) / "run") as (port, _):
            figures = measure(port, args.photo, args.rounds, args.screenshots)
    print(
        json.dumps(
            {
                "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
                "commit": commit(),
                "command": " ".join(["python", *sys.argv]),
                "model": str(args.model_dir or "resnet50, 133 classes, random weights, 224 px"),
                "machine": machine(),
                **figures,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
