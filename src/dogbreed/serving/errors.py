"""Request errors that carry the HTTP status a client should get (4xx: the request is at fault)."""

from __future__ import annotations


class ServingError(ValueError):
    """A request the model cannot answer; `status` is the HTTP status to send back."""

    status: int = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def to_json(self) -> dict:
        return {"error": type(self).__name__, "status": self.status, "message": self.message}


class BadRequestError(ServingError):
    """Empty body, bytes that are not an image, malformed JSON, bad parameters."""

    status = 400


class NotAcceptableError(ServingError):
    """The Accept header asks for a response type we do not produce."""

    status = 406


class PayloadTooLargeError(ServingError):
    """A body over the byte limit or an image over the pixel limit (decompression bombs)."""

    status = 413


class UnsupportedMediaTypeError(ServingError):
    """A Content-Type we do not decode."""

    status = 415
