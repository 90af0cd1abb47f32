"""Turn a request body into RGB images, or say exactly what is wrong with it (typed 4xx errors).

Accepted bodies: raw image bytes (`image/jpeg`, `image/png`, `image/webp`, `image/bmp`, `image/gif`,
`image/tiff`, `application/x-image`, `application/octet-stream`; the bytes decide the format, not the header)
or `application/json` carrying base64 images as `{"image": "<b64>"}` or `{"images": ["<b64>", ...]}`.
URLs are refused: the server fetches nothing on a caller's behalf.

Memory is decided here, before any pixel is decoded: the header gives each image's size, the JPEG decoder's
draft mode says how much of it will really be materialised, and that size is held against a per-image and a
per-request budget. Thin images are refused too, because the resize to the model's short side would blow
them up (1 x 30,000 pixels becomes 232 x 6,960,000).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, fields

from PIL import Image, UnidentifiedImageError

from dogbreed.data.images import BadImageError, load_rgb
from dogbreed.serving.errors import (
    BadRequestError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
    shorten,
)

IMAGE_CONTENT_TYPES = (
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/bmp",
    "image/gif",
    "image/tiff",
    "application/x-image",
    "application/octet-stream",
)
JSON_CONTENT_TYPE = "application/json"
CONTENT_TYPES = (*IMAGE_CONTENT_TYPES, JSON_CONTENT_TYPE)
# Formats Pillow may parse: photo formats only, so no exotic decoder sees untrusted bytes.
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
URL_PREFIXES = ("http://", "https://", "s3://", "ftp://", "file:")


@dataclass(frozen=True)
class RequestLimits:
    # SageMaker's real-time endpoints cap payloads at 6 MB; the local server mirrors it by default.
    max_body_bytes: int = 6 * 2**20
    # Pixels the decoder will materialise for one image (after JPEG draft reduction), checked before
    # decoding: a small file that expands to gigapixels is never decoded.
    max_pixels: int = 40_000_000
    max_images: int = 32  # per JSON request
    # Decoded pixels of all images of one request together: many images each within max_pixels still
    # cost memory and CPU time that other requests wait for.
    max_request_pixels: int = 80_000_000
    # Long side over short side: the resize scales the short side to the model's size, so a thin image
    # grows by its aspect ratio; photos rarely pass 4:1, panoramas stay within this.
    max_aspect_ratio: float = 20.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> RequestLimits:
        """DOGBREED_MAX_BODY_BYTES / _MAX_PIXELS / _MAX_IMAGES / _MAX_REQUEST_PIXELS / _MAX_ASPECT_RATIO
        (a SageMaker model's environment)."""
        values: dict[str, float] = {}
        for f in fields(cls):
            variable = f"DOGBREED_{f.name.upper()}"
            raw = environ.get(variable)
            if raw:
                kind = float if f.type in (float, "float") else int
                try:
                    values[f.name] = kind(raw)
                except ValueError:
                    raise ValueError(f"{variable}={raw!r} must be a number ({kind.__name__})") from None
        return cls(**values)  # type: ignore[arg-type]


def parse_media_type(header: str | None) -> tuple[str, dict[str, str]]:
    """'application/json; topk=3' -> ('application/json', {'topk': '3'}); names lower-cased."""
    if not header:
        return "", {}
    media, *params = header.split(";")
    parsed = {}
    for param in params:
        key, _, value = param.partition("=")
        if key.strip():
            parsed[key.strip().lower()] = value.strip().strip('"')
    return media.strip().lower(), parsed


@dataclass(frozen=True)
class EncodedImage:
    """One image of a request whose header has been checked; `where` names it in error messages.

    `width` x `height` is the size the header announces, `decoded_pixels` what decoding it with the
    server's draft size materialises (less for a large JPEG)."""

    data: bytes
    where: str
    width: int
    height: int
    decoded_pixels: int = 0
    draft_size: int | None = None


def _open_header(data: bytes, where: str, limits: RequestLimits) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except Image.DecompressionBombError as exc:
        # Pillow's own guard (twice Image.MAX_IMAGE_PIXELS) fires while parsing the header, before ours.
        announced = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{announced.group(1)} pixels" if announced else "more pixels than Pillow opens"
        raise PayloadTooLargeError(f"{where} is {size}, over the limit of {limits.max_pixels}") from exc
    except UnidentifiedImageError as exc:
        raise BadRequestError(
            f"{where} is not an image in a known format ({', '.join(IMAGE_FORMATS)})"
        ) from exc
    except (OSError, ValueError, SyntaxError, struct.error) as exc:
        raise BadRequestError(f"{where} has an unreadable image header: {exc}") from exc


def check_image(
    data: bytes, limits: RequestLimits, where: str, draft_size: int | None = None
) -> EncodedImage:
    """Read only the header: refuse non-images, thin images, and images whose decoded size is over the
    pixel limit, so a small file that expands to gigapixels is never decoded."""
    if not data:
        raise BadRequestError(f"{where} is empty: send the bytes of a JPEG or PNG image")
    with _open_header(data, where, limits) as img:
        width, height = img.size
        if width < 1 or height < 1:
            raise BadRequestError(f"{where} is {width}x{height} pixels: an image needs at least one pixel")
        ratio = max(width, height) / min(width, height)
        if ratio > limits.max_aspect_ratio:
            raise BadRequestError(
                f"{where} is {width}x{height} pixels, an aspect ratio of {ratio:.0f}:1, over the limit of "
                f"{limits.max_aspect_ratio:g}:1: resizing its short side to the model's input would "
                "blow it up; crop it first"
            )
        if draft_size:
            # draft() only changes what load() will decode (JPEG scales by 1/2..1/8); nothing is decoded here.
            try:
                img.draft("RGB", (draft_size, draft_size))
            except (OSError, ValueError, SyntaxError) as exc:
                raise BadRequestError(f"{where} has an unreadable image header: {exc}") from exc
        decoded_width, decoded_height = img.size
    decoded = decoded_width * decoded_height
    if decoded > limits.max_pixels:
        raise PayloadTooLargeError(
            f"{where} is {width}x{height} = {width * height} pixels, over the limit of {limits.max_pixels}"
        )
    return EncodedImage(data, where, width, height, decoded, draft_size)


def decode_image(image: EncodedImage, draft_size: int | None = None) -> Image.Image:
    """Decode as evaluation does: `load_rgb` with the same JPEG draft size (the resize size)."""
    try:
        return load_rgb(io.BytesIO(image.data), draft_size=draft_size or image.draft_size)
    except BadImageError as exc:
        raise BadRequestError(f"{image.where} cannot be decoded: {exc.__cause__ or exc}") from exc


def _base64_image(value: object, field: str) -> bytes:
    if not isinstance(value, str):
        raise BadRequestError(f"JSON field {field} must be a base64 string, not {type(value).__name__}")
    if value.lower().startswith(URL_PREFIXES):
        raise BadRequestError(
            f"JSON field {field} holds a URL: this server fetches nothing, send the image base64-encoded"
        )
    if value.startswith("data:"):  # data:image/jpeg;base64,....
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequestError(f"JSON field {field} is not valid base64: {exc}") from exc


def images_from_json(body: bytes | str, limits: RequestLimits) -> list[tuple[bytes, str]]:
    """The encoded images of a JSON body with the field each came from (for error messages)."""
    try:
        doc = json.loads(body)
    except RecursionError as exc:
        raise BadRequestError("request body is JSON nested deeper than the parser follows") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of thousands of digits
        raise BadRequestError(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or not ({"image", "images"} & doc.keys()):
        # Name a few keys, each shortened: the answer must never replay a large body.
        keys = [shorten(str(k), 40) for k in sorted(doc)[:5]] if isinstance(doc, dict) else type(doc).__name__
        hint = (
            " (URLs are not fetched)" if isinstance(doc, dict) and {"url", "urls", "uri"} & doc.keys() else ""
        )
        raise BadRequestError(
            f'JSON body must be {{"image": "<base64>"}} or {{"images": ["<base64>", ...]}}, got {keys}{hint}'
        )
    if "image" in doc:
        return [(_base64_image(doc["image"], "image"), "JSON field image")]
    images = doc["images"]
    if not isinstance(images, list) or not images:
        raise BadRequestError("JSON field images must be a non-empty list of base64 strings")
    if len(images) > limits.max_images:
        raise PayloadTooLargeError(
            f"JSON field images holds {len(images)} images, over the limit of {limits.max_images}"
        )
    return [(_base64_image(v, f"images[{i}]"), f"JSON field images[{i}]") for i, v in enumerate(images)]


def read_request(
    body: bytes | str | None,
    content_type: str | None,
    limits: RequestLimits = RequestLimits(),
    draft_size: int | None = None,
) -> list[EncodedImage]:
    """All images of one request, checked up to their headers and against the request's pixel budget;
    raises a ServingError with the HTTP status. `draft_size`: the size the server decodes JPEGs for."""
    media, _ = parse_media_type(content_type)
    if media not in CONTENT_TYPES:
        raise UnsupportedMediaTypeError(
            f"Content-Type {content_type or '(none)'} unsupported, send one of {', '.join(CONTENT_TYPES)}"
        )
    if body is None or len(body) == 0:
        raise BadRequestError("request body is empty: send the bytes of a JPEG or PNG image")
    size = len(body.encode() if isinstance(body, str) else body)
    if size > limits.max_body_bytes:
        raise PayloadTooLargeError(f"request body is {size} bytes, over the limit of {limits.max_body_bytes}")
    if media == JSON_CONTENT_TYPE:
        encoded = images_from_json(body, limits)
    else:
        if isinstance(body, str):  # some toolkits hand text bodies over decoded
            body = body.encode("latin-1")
        encoded = [(body, "request body")]
    images, total = [], 0
    for data, where in encoded:
        image = check_image(data, limits, where, draft_size)
        total += image.decoded_pixels
        if total > limits.max_request_pixels:
            raise PayloadTooLargeError(
                f"the images of this request up to {where} decode to {total} pixels, over the request "
                f"limit of {limits.max_request_pixels}: send them in several requests"
            )
        images.append(image)
    return images
