"""Turn a request body into RGB images, or say exactly what is wrong with it (typed 4xx errors).

Accepted bodies: raw image bytes (`image/jpeg`, `image/png`, `image/webp`, `image/bmp`, `image/gif`,
`image/tiff`, `application/x-image`, `application/octet-stream`; the bytes decide the format, not the header)
or `application/json` carrying base64 images as `{"image": "<b64>"}` or `{"images": ["<b64>", ...]}`.
URLs are refused: the server fetches nothing on a caller's behalf.

Cost is decided here, before any pixel is decoded, by the data layer's one image path
(data.images.open_checked): the header gives each image's size, mode and JPEG scans, the JPEG decoder's
draft mode says how much of it will really be materialised, and that is held against the per-image limits
(pixels, decoding memory, scans) and the request's pixel budget. Thin images are refused too, because the
resize to the model's short side would blow them up (1 x 30,000 pixels becomes 232 x 6,960,000). Decoding
opens the bytes the same way and checks them again, so what was checked is what is decoded.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass

from PIL import Image

from dogbreed.data.images import (
    BadImageError,
    ImageHeader,
    ImageLimits,
    ImageTooLargeError,
    load_rgb,
    read_header,
)
from dogbreed.serving.errors import (
    BadRequestError,
    PayloadTooLargeError,
    ServingError,
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
URL_PREFIXES = ("http://", "https://", "s3://", "ftp://", "file:")


@dataclass(frozen=True)
class RequestLimits:
    # SageMaker's real-time endpoints cap payloads at 6 MB; the local server mirrors it by default.
    max_body_bytes: int = 6 * 2**20
    # Pixels the decoder will materialise for one image (after JPEG draft reduction), checked before
    # decoding: a small file that expands to gigapixels is never decoded.
    max_pixels: int = 40_000_000
    max_images: int = 32  # per JSON request
    # CPU time of decoding all images of one request together, in decoded pixels (a JPEG decoder's pass
    # over one 8x8 block counts as part of a pixel, data.image_cost.decode_work): many images each within
    # the per-image limits still cost CPU time that other requests wait for.
    max_request_pixels: int = 80_000_000
    # Long side over short side: the resize scales the short side to the model's size, so a thin image
    # grows by its aspect ratio; photos rarely pass 4:1, panoramas stay within this.
    max_aspect_ratio: float = 20.0
    # Peak memory of decoding one image, from its header: decoded pixels times the bytes a pixel of its
    # mode takes until it is RGB, plus a multi-scan JPEG's full-size coefficients (data.image_cost).
    max_decode_bytes: int = 512 * 2**20
    # Scans of one JPEG: the decoder passes over the whole image once per scan, so a small progressive
    # file of many empty scans costs seconds; encoders write at most a few dozen.
    max_jpeg_scans: int = 64

    @property
    def per_image(self) -> ImageLimits:
        """The bounds the data layer holds one image's header against before decoding it."""
        return ImageLimits(
            max_pixels=self.max_pixels,
            max_aspect_ratio=self.max_aspect_ratio,
            max_decode_bytes=self.max_decode_bytes,
            max_jpeg_scans=self.max_jpeg_scans,
        )


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
    server's draft size materialises (less for a large JPEG). `header` and `limits` are what the check
    read and held it against: decoding checks the image again against the same limits."""

    data: bytes
    where: str
    width: int
    height: int
    decoded_pixels: int = 0
    draft_size: int | None = None
    header: ImageHeader | None = None
    limits: ImageLimits = ImageLimits()


def _serving_error(exc: BadImageError) -> ServingError:
    """The HTTP answer to an image the data layer refused: 413 for a budget, 400 otherwise."""
    if isinstance(exc, ImageTooLargeError):
        return PayloadTooLargeError(str(exc))
    return BadRequestError(str(exc))


def check_image(
    data: bytes, limits: RequestLimits, where: str, draft_size: int | None = None
) -> EncodedImage:
    """Read only the header, as decoding will (data.images.open_checked): refuse non-images, thin images,
    and images whose decoding would cost more than the per-image limits, so a small file that expands to
    gigapixels is never decoded."""
    if not data:
        raise BadRequestError(f"{where} is empty: send the bytes of a JPEG or PNG image")
    try:
        header = read_header(data, draft_size, limits.per_image, where)
    except BadImageError as exc:
        raise _serving_error(exc) from exc
    return EncodedImage(
        data, where, header.width, header.height, header.decoded_pixels, draft_size, header, limits.per_image
    )


def decode_image(image: EncodedImage, draft_size: int | None = None) -> Image.Image:
    """Decode as evaluation does: `load_rgb` with the same JPEG draft size (the resize size), checked
    again against the same limits, and refused if its header now reads otherwise than at the check."""
    draft = draft_size or image.draft_size
    expected = image.header if draft == image.draft_size else None
    try:
        return load_rgb(image.data, draft, image.limits, image.where, expected)
    except BadImageError as exc:
        raise _serving_error(exc) from exc


BASE64_URL_SAFE = str.maketrans("-_", "+/")
BASE64_TEXT = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def decode_base64(value: str) -> bytes:
    """Standard base64 as `base64.b64encode` writes it, and the variants encoders commonly send: line
    breaks every so many characters (`base64.encodebytes`, MIME), padding left out, or the URL-safe
    alphabet (`-_` for `+/`). Nothing else: any other character, both alphabets mixed, or a length no
    encoder writes raises binascii.Error."""
    text = value.replace("\r\n", "").replace("\n", "")
    if "-" in text or "_" in text:
        if "+" in text or "/" in text:
            raise binascii.Error("it mixes the standard (+/) and the URL-safe (-_) alphabets")
        text = text.translate(BASE64_URL_SAFE)
    if not BASE64_TEXT.fullmatch(text):
        raise binascii.Error(
            "it holds a character outside the base64 alphabet, or padding before its end "
            "(only line breaks may separate its characters)"
        )
    unpadded = text.rstrip("=")
    if len(unpadded) % 4 == 1 or (unpadded != text and len(text) % 4):
        raise binascii.Error(f"{len(text)} characters are not a whole number of base64 groups")
    return base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), validate=True)


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
        return decode_base64(value)
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
        total += image.header.decode_work if image.header else image.decoded_pixels
        if total > limits.max_request_pixels:
            raise PayloadTooLargeError(
                f"the images of this request up to {where} cost as much to decode as {total} pixels, over "
                f"the request limit of {limits.max_request_pixels}: send them in several requests"
            )
        images.append(image)
    return images
