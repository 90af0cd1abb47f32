"""The page at / of the local server and Grad-CAM in the answer, with a model from a real tiny training run
(six classes, so that the page has five bars to draw), driven in a real Chromium where one is installed."""

from __future__ import annotations

import base64
import io
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dogbreed.data.embedded import generate_dataset
from dogbreed.modeldir.format import display_name
from dogbreed.serving.app import create_app
from dogbreed.serving.decoding import RequestLimits
from dogbreed.serving.explain import explainer_for
from dogbreed.serving.settings import ServerSettings
from tests.browser import Console, chromium
from tests.conftest import TINY, compose_config
from tests.serving_support import invoke, request, running_server

pytestmark = pytest.mark.slow  # a training run, a server and a browser

LIMITS = RequestLimits(max_body_bytes=200_000)
TOP5 = "application/json; topk=5"


@pytest.fixture(scope="module")
def shapes6(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(
        tmp_path_factory.mktemp("data") / "shapes6",
        num_classes=6,
        images_per_class={"train": 16, "valid": 6, "test": 6},
        image_size=64,
        seed=5,
    )


@pytest.fixture(scope="module")
def model_dir(shapes6: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny six-class model at 64 px (a 2 x 2 heat map), with its model card and evaluation report."""
    from dogbreed.training.fit import fit

    run_dir = tmp_path_factory.mktemp("page-run")
    tiny = [o for o in TINY if not o.startswith("data.image_size=")]
    fit(
        compose_config(run_dir, [*tiny, f"data.root={shapes6}", "data.image_size=64", "trainer.max_epochs=2"])
    )
    return run_dir / "model"


@pytest.fixture(scope="module")
def photos(shapes6: Path) -> list[Path]:
    """Two generated test photos of two classes (JPEG files)."""
    return [sorted(folder.iterdir())[0] for folder in sorted((shapes6 / "test").iterdir())[:2]]


@pytest.fixture(scope="module")
def port(model_dir: Path):
    with running_server(create_app(model_dir, ServerSettings(max_wait_ms=0, limits=LIMITS))) as port:
        yield port


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


def open_page(browser, port: int, path: str = "/"):
    page = browser.new_page(viewport={"width": 1000, "height": 800})
    console = Console()
    console.watch(page)
    page.goto(f"http://127.0.0.1:{port}{path}")
    return page, console


def too_large_photo(folder: Path) -> Path:
    """A PNG of noise, over LIMITS.max_body_bytes (noise does not compress)."""
    pixels = np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    path = folder / "huge.png"
    Image.fromarray(pixels).save(path)
    assert path.stat().st_size > LIMITS.max_body_bytes
    return path


def test_explain_adds_the_heat_map_of_the_top_class(port, model_dir, photos):
    jpeg = photos[0].read_bytes()
    by_accept = invoke(port, jpeg, "image/jpeg", f"{TOP5}; explain=gradcam").json()["predictions"][0]
    by_query = invoke(port, jpeg, "image/jpeg", query="?explain=gradcam").json()["predictions"][0]
    plain = invoke(port, jpeg, "image/jpeg").json()["predictions"][0]
    assert "gradcam" not in plain and by_accept["topk"] == plain["topk"]
    heat = by_accept["gradcam"]
    assert heat == by_query["gradcam"]
    top = plain["topk"][0]
    assert (heat["index"], heat["class_name"], heat["label"]) == (
        top["index"],
        top["class_name"],
        top["label"],
    )
    png = Image.open(io.BytesIO(base64.b64decode(heat["png"])))
    assert png.format == "PNG" and png.mode == "RGBA" and png.size == (64, 64)  # the 64 px crop
    preprocessing = json.loads((model_dir / "model.json").read_text())["preprocessing"]
    assert heat["crop_fraction"] == pytest.approx(preprocessing["crop_size"] / preprocessing["resize_size"])

    both = json.dumps({"images": [base64.b64encode(p.read_bytes()).decode() for p in photos]})
    answer = invoke(port, both.encode(), "application/json", "application/json; explain=gradcam").json()
    for prediction in answer["predictions"]:
        assert prediction["gradcam"]["index"] == prediction["topk"][0]["index"]

    refused = invoke(port, jpeg, "image/jpeg", "application/json; explain=shap")
    assert refused.status == 400 and "explain='shap' is not one of gradcam" in refused.json()["message"]


def test_a_heat_map_waiting_its_turn_still_holds_its_place_in_the_queue(model_dir, photos):
    jpeg = photos[0].read_bytes()
    settings = ServerSettings(max_wait_ms=0, max_queue=1, limits=LIMITS, device="cpu")
    with running_server(create_app(model_dir, settings)) as port, ThreadPoolExecutor(1) as pool:
        explainer = explainer_for(model_dir, "cpu")
        with explainer._lock:  # as while another request's heat map is drawn
            waiting = pool.submit(invoke, port, jpeg, "image/jpeg", "application/json; explain=gradcam")
            deadline = time.monotonic() + 60
            while request(port, "GET", "/stats").json()["queued_images"] != 1:
                assert time.monotonic() < deadline and not waiting.done(), "the request was never queued"
                time.sleep(0.02)
            refused = invoke(port, jpeg, "image/jpeg")
        assert refused.status == 503  # max_queue=1: the image waiting for its heat map fills the queue
        answered = waiting.result(timeout=60)
        assert answered.status == 200 and "gradcam" in answered.json()["predictions"][0]


def test_the_page_its_files_and_the_report_ship_from_this_server_only(port, model_dir):
    page = request(port, "GET", "/")
    assert page.status == 200 and page.content_type.startswith("text/html")
    html = page.body.decode()
    assert 'type="file" accept="image/*" multiple' in html and 'capture="environment"' in html
    for name in ("page.css", "page.js"):
        asset = request(port, "GET", f"/static/{name}")
        assert asset.status == 200 and not re.search(r"https?://", asset.body.decode())
    assert not re.search(r"https?://", html)
    assert request(port, "GET", "/static/index.py").status == 404
    assert request(port, "GET", "/static/..%2Fpage.py").status == 404

    about = request(port, "GET", "/model").json()
    card = json.loads((model_dir / "model_card.json").read_text())
    assert about["title"] == "Image classifier: resnet18, 6 classes" and about["num_classes"] == 6
    assert about["test_accuracy"] == card["test_accuracy"] and about["report"] == "report"
    report = request(port, "GET", "/report")
    assert report.status == 200 and report.body == (model_dir / "evaluation.html").read_bytes()


def test_page_false_serves_no_page_and_the_same_answers(model_dir, photos):
    settings = ServerSettings(max_wait_ms=0, limits=LIMITS, page=False)
    with running_server(create_app(model_dir, settings)) as port:
        assert [request(port, "GET", path).status for path in ("/", "/model", "/report")] == [404] * 3
        assert invoke(port, photos[0].read_bytes(), "image/jpeg").status == 200


def test_page_loads_with_no_console_error_and_says_what_the_model_is(browser, port, model_dir):
    page, console = open_page(browser, port)
    card = json.loads((model_dir / "model_card.json").read_text())
    page.wait_for_selector("#model:has-text('test accuracy')")  # selectors: the page's policy forbids eval
    about = page.inner_text("#model")
    assert about.startswith("Image classifier: resnet18, 6 classes")
    shown = re.search(r"test accuracy ([\d.]+)%", about)
    assert shown and abs(float(shown[1]) - 100 * card["test_accuracy"]) <= 0.5
    assert page.is_visible("#report")
    assert console.errors == []
    page.close()


def test_photos_uploaded_get_five_bars_led_by_the_json_top1_and_a_heat_map(browser, port, photos):
    page, console = open_page(browser, port)
    page.set_input_files("#photos", [str(p) for p in photos])
    page.locator(".result[data-state=done]").nth(1).wait_for(timeout=60_000)
    for photo in photos:
        result = page.locator(".result", has=page.locator("figcaption", has_text=photo.name))
        expected = invoke(port, photo.read_bytes(), "image/jpeg", TOP5).json()["predictions"][0]["topk"]
        labels = result.locator(".bars .label").all_inner_texts()
        assert len(labels) == 5 and labels[0] == expected[0]["label"]
        assert labels == [entry["label"] for entry in expected]
        assert re.fullmatch(r"Answered in \d+ ms .*", result.locator(".latency").inner_text())
        heatmap = result.locator(".heatmap")
        assert heatmap.is_visible() and heatmap.evaluate("img => img.complete && img.naturalWidth") == 64
        assert expected[0]["label"] in heatmap.get_attribute("alt")
        result.locator(".opacity").fill("20")
        assert heatmap.evaluate("img => img.style.opacity") == "0.2"
    alts = page.locator(".result img:not([hidden])").evaluate_all("imgs => imgs.map(i => i.alt)")
    assert len(alts) == 4 and all(alts)
    assert console.errors == []
    page.close()


def test_a_too_large_photo_gets_the_413_sentence_beside_it(browser, port, tmp_path):
    page, _ = open_page(browser, port)
    page.set_input_files("#photos", str(too_large_photo(tmp_path)))
    page.wait_for_selector(".result[data-state=error]", timeout=60_000)
    sentence = page.inner_text(".result .error")
    assert sentence.startswith("This photo is too large for the server")
    assert "over the limit of 200000" in sentence  # the server's own message, after the sentence
    assert page.is_hidden(".result .bars")
    page.close()


def test_the_page_works_from_the_keyboard(browser, port, photos):
    page, console = open_page(browser, port)
    focused = []
    for _ in range(3):
        page.keyboard.press("Tab")
        focused.append(page.evaluate("document.activeElement.id"))
    assert focused == ["photos", "camera", "explain"]
    page.keyboard.press("Space")  # no heat map, then
    assert not page.is_checked("#explain")
    page.set_input_files("#photos", str(photos[1]))
    page.wait_for_selector(".result[data-state=done]", timeout=60_000)
    assert page.is_hidden(".result .heatmap") and page.is_hidden(".result .slider")
    assert console.errors == []
    page.close()


def test_the_evaluation_report_renders_its_charts_and_gallery(browser, port, model_dir):
    page, console = open_page(browser, port)
    page.wait_for_selector("#report:not([hidden])")
    page.click("#report")
    page.wait_for_load_state()
    assert page.title() == "Evaluation report"
    assert page.locator("svg.chart g.bar").count() == 6
    labels = page.locator("svg.chart text.name").all_text_contents()
    accuracy = [float(t.split("%")[0]) for t in page.locator("svg.chart text.value").all_text_contents()]
    assert accuracy == sorted(accuracy) and len(labels) == 6  # weakest first
    class_names = json.loads((model_dir / "model.json").read_text())["class_names"]
    assert set(labels) == {display_name(c) for c in class_names}
    assert page.locator("table.confusion tbody tr").count() == 6
    figures = page.locator("figure.example")
    assert figures.count() >= 1
    loaded = page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth === 128)")
    assert loaded and page.locator("figure.example img").count() == 2 * figures.count()
    assert console.errors == []  # the report fetched nothing: a blocked request would be an error here
    page.close()
