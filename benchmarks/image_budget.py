"""What decoding one image, and one request, costs on the serving path, measured; prints JSON.

1. `bytes_per_pixel`: one image of each format and mode the allow-list reads (10 MP by default), decoded in
   full (no JPEG draft, no limits) to RGB, each in a process of its own: the peak resident memory it added
   (VmHWM over VmRSS before) per decoded pixel, next to what the budget (data.image_cost) charges for it
   (its fixed allowance included). `within_charge` is false for a case that took more than it is charged;
   the exit status is then 1.
2. `bounds`: under conf/deploy.yaml's limits, as a server decodes (JPEG draft at ResNet50's resize size,
   232): the costliest images the limits still admit (40 MP in the costliest modes; a 13000 x 13000
   progressive JPEG of as many empty scans as the request budget admits, the most CPU time per image),
   those just past them, the hostile files they refuse or defuse (the TIFF/IM polyglot, a 1,000-scan
   progressive JPEG), and one JSON request of two 40 MP images (the request budget). Each with its peak
   memory, CPU seconds and status.

    python benchmarks/image_budget.py [--megapixels 10] [--only png_rgba,...]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.hostile_images import many_scan_jpeg, tiff_im_polyglot  # noqa: E402

RESIZE_SIZE = 232  # ResNet50's resize at 224 px: the JPEG draft size a default model decodes with
UNLIMITED = {
    "max_body_bytes": 2**40,
    "max_pixels": 2**40,
    "max_request_pixels": 2**40,
    "max_aspect_ratio": 1e9,
    "max_decode_bytes": 2**50,
    "max_jpeg_scans": 2**30,
}


def _vm(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def measure_in_this_process(body: bytes, content_type: str, draft: int | None, per_mode: bool) -> dict:
    """The server's preprocessing of one request (read_request, then decode and transform image after
    image), with its peak memory above the memory before it and its CPU time. `per_mode`: no limits, and
    decoding to RGB alone (the part charged per pixel)."""
    from dogbreed.data.preprocessing import preprocessing_for
    from dogbreed.serving.decoding import RequestLimits, decode_image, read_request
    from dogbreed.serving.errors import ServingError

    limits = RequestLimits(**UNLIMITED) if per_mode else RequestLimits()
    model_transform = preprocessing_for("resnet50", 224).eval_transform()

    def transform(img: Image.Image) -> object:
        return img if per_mode else model_transform(img)

    warm = io.BytesIO()
    Image.new("RGB", (64, 48)).save(warm, "PNG")
    transform(decode_image(read_request(warm.getvalue(), "image/png", limits, draft)[0]))
    before = _vm("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM, the peak, back to the current RSS
    cpu, wall = time.process_time(), time.perf_counter()
    result: dict = {"status": 200}
    try:
        images = read_request(body, content_type, limits, draft)
        for image in images:
            transform(decode_image(image))
        result["decoded_pixels"] = sum(image.decoded_pixels for image in images)
        result["decode_work"] = sum(image.header.decode_work for image in images if image.header)
        result["charged_bytes"] = max(image.header.decode_bytes for image in images if image.header)
        result["headers"] = [
            {"format": i.header.format, "mode": i.header.mode, "size": [i.width, i.height]}
            for i in images
            if i.header
        ]
    except ServingError as exc:
        result.update(status=exc.status, message=exc.message)
    result["cpu_s"] = round(time.process_time() - cpu, 3)
    result["wall_s"] = round(time.perf_counter() - wall, 3)
    result["peak_bytes"] = _vm("VmHWM") - before
    return result


def measure(path: Path, content_type: str, draft: int | None, per_mode: bool) -> dict:
    """`measure_in_this_process` in a fresh process, so that each peak starts from the same memory."""
    command = [sys.executable, __file__, "--child", str(path), content_type, str(draft or 0)]
    if per_mode:
        command.append("--per-mode")
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def smooth(width: int, height: int) -> np.ndarray:
    """A photo-like 8-bit RGB array: gradients and mild noise (compresses as photos do, not as noise)."""
    rng = np.random.default_rng(0)
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    base = np.stack([x + 0 * y, y + 0 * x, (x + y) / 2], axis=-1)
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def image_of_mode(mode: str, width: int, height: int) -> Image.Image:
    rgb = Image.fromarray(smooth(width, height))
    if mode == "F":
        return Image.fromarray(np.asarray(rgb.convert("L"), np.float32) * 3.7, "F")
    if mode == "I":
        return Image.fromarray(np.asarray(rgb.convert("L"), np.int32) * 1000, "I")
    if mode == "I;16":
        return Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257)
    if mode in ("LA", "RGBA"):
        img = rgb.convert(mode)
        img.putalpha(Image.fromarray(smooth(width, height)[..., 0]))
        return img
    return rgb.convert(mode)


def encoded(fmt: str, mode: str, width: int, height: int, **options) -> bytes:
    out = io.BytesIO()
    image_of_mode(mode, width, height).save(out, fmt, **options)
    return out.getvalue()


def per_mode_cases(width: int, height: int) -> dict[str, Callable[[], bytes]]:
    return {
        "jpeg_rgb": lambda: encoded("JPEG", "RGB", width, height, quality=90),
        "jpeg_progressive_rgb": lambda: encoded("JPEG", "RGB", width, height, quality=90, progressive=True),
        "jpeg_l": lambda: encoded("JPEG", "L", width, height),
        "jpeg_cmyk": lambda: encoded("JPEG", "CMYK", width, height),
        "png_rgb": lambda: encoded("PNG", "RGB", width, height),
        "png_rgba": lambda: encoded("PNG", "RGBA", width, height),
        "png_l": lambda: encoded("PNG", "L", width, height),
        "png_la": lambda: encoded("PNG", "LA", width, height),
        "png_p": lambda: encoded("PNG", "P", width, height),
        "png_p_transparent": lambda: encoded("PNG", "P", width, height, transparency=0),
        "png_i16": lambda: encoded("PNG", "I;16", width, height),
        "png_1": lambda: encoded("PNG", "1", width, height),
        "tiff_f": lambda: encoded("TIFF", "F", width, height),
        "tiff_i": lambda: encoded("TIFF", "I", width, height),
        "tiff_i16": lambda: encoded("TIFF", "I;16", width, height),
        "tiff_rgb_deflate": lambda: encoded("TIFF", "RGB", width, height, compression="tiff_deflate"),
        "tiff_cmyk": lambda: encoded("TIFF", "CMYK", width, height),
        "tiff_rgba": lambda: encoded("TIFF", "RGBA", width, height),
        "webp_rgb": lambda: encoded("WEBP", "RGB", width, height, quality=80),
        "webp_rgba": lambda: encoded("WEBP", "RGBA", width, height, quality=80),
        "bmp_rgb": lambda: encoded("BMP", "RGB", width, height),
        "gif_p": lambda: encoded("GIF", "P", width, height),
        "ppm_rgb": lambda: encoded("PPM", "RGB", width, height),
    }


def flat(fmt: str, mode: str, width: int, height: int, **options) -> bytes:
    """A flat image (compresses to almost nothing): the costliest sizes still fit a 6 MiB body."""
    out = io.BytesIO()
    value = 0.5 if mode == "F" else (120, 80) if mode == "LA" else (120, 80, 40, 200)[: len(mode)]
    Image.new(mode, (width, height), value).save(out, fmt, **options)  # type: ignore[arg-type]
    return out.getvalue()


def bound_cases() -> dict[str, tuple[Callable[[], bytes], str]]:
    forty = (8000, 5000)

    def two_images_request() -> bytes:
        one = base64.b64encode(flat("PNG", "RGBA", *forty)).decode()
        return json.dumps({"images": [one, one]}).encode()

    return {
        "png_rgba_40mp": (lambda: flat("PNG", "RGBA", *forty), "image/png"),
        "png_la_40mp": (lambda: flat("PNG", "LA", *forty), "image/png"),
        "tiff_float_40mp": (lambda: flat("TIFF", "F", *forty, compression="tiff_deflate"), "image/tiff"),
        "webp_rgba_40mp": (lambda: flat("WEBP", "RGBA", *forty, lossless=True), "image/webp"),
        "jpeg_progressive_48mp": (
            lambda: encoded("JPEG", "RGB", 8000, 6000, quality=75, progressive=True),
            "image/jpeg",
        ),
        # The most decoding work one request admits (limits.max_request_pixels): the most CPU per image.
        "jpeg_13000_gray_58_scans": (lambda: many_scan_jpeg(13_000, 13_000, 58, components=1), "image/jpeg"),
        "jpeg_13000_gray_64_scans": (lambda: many_scan_jpeg(13_000, 13_000, 64, components=1), "image/jpeg"),
        "jpeg_13000_1000_scans": (lambda: many_scan_jpeg(13_000, 13_000, 1_000), "image/jpeg"),
        "tiff_im_polyglot": (tiff_im_polyglot, "image/tiff"),
        "request_two_40mp_png_rgba": (two_images_request, "application/json"),
    }


def machine() -> dict:
    from dogbreed.tracking.manifest import cpu_name

    cpu = cpu_name()  # the manifest's own reading of /proc/cpuinfo
    import PIL

    return {"cpu": cpu, "cpus_available": len(os.sched_getaffinity(0)), "pillow": PIL.__version__}


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--megapixels", type=float, default=10.0, help="size of the per-mode images")
    parser.add_argument("--only", default="", help="comma-separated case names")
    parser.add_argument("--child", nargs=3, metavar=("FILE", "CONTENT_TYPE", "DRAFT"), help=argparse.SUPPRESS)
    parser.add_argument("--per-mode", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        path, content_type, draft = args.child
        body = Path(path).read_bytes()
        print(json.dumps(measure_in_this_process(body, content_type, int(draft) or None, args.per_mode)))
        return 0

    only = set(filter(None, args.only.split(",")))
    width = int((args.megapixels * 1e6 * 1.6) ** 0.5)
    height = int(width / 1.6)
    report: dict = {
        "date": date.today().isoformat(),
        "commit": commit(),
        "machine": machine(),
        "command": " ".join(["python", "benchmarks/image_budget.py", *sys.argv[1:]]),
        "bytes_per_pixel": {},
        "bounds": {},
    }
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in per_mode_cases(width, height).items():
            if only and name not in only:
                continue
            path = Path(tmp) / name
            path.write_bytes(make())
            result = measure(path, "application/octet-stream", None, per_mode=True)
            pixels = result.get("decoded_pixels") or 1
            measured = result["peak_bytes"] / pixels
            charged = result.get("charged_bytes", 0) / pixels
            within = result["status"] == 200 and measured <= charged
            failed |= not within
            report["bytes_per_pixel"][name] = {
                "size": f"{width}x{height}",
                "file_bytes": path.stat().st_size,
                "measured": round(measured, 2),
                "charged": round(charged, 2),
                "within_charge": within,
                "cpu_s": result["cpu_s"],
                **({"message": result["message"]} if "message" in result else {}),
            }
            path.unlink()
        for name, (make, content_type) in bound_cases().items():
            if only and name not in only:
                continue
            path = Path(tmp) / name
            path.write_bytes(make())
            result = measure(path, content_type, RESIZE_SIZE, per_mode=False)
            result["peak_mb"] = round(result.pop("peak_bytes") / 2**20, 1)
            if "charged_bytes" in result:
                result["charged_mb"] = round(result.pop("charged_bytes") / 2**20, 1)
            report["bounds"][name] = {"body_bytes": path.stat().st_size, **result}
            path.unlink()
    report["max_rss_of_this_process_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(report, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
