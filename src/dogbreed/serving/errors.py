"""Request errors that carry the HTTP status a client should get (4xx: the request is at fault)."""

from __future__ import annotations

import json

# A client error names what is wrong, never replays what was sent: the message is cut here, so that a
# megabyte-long JSON key or header never comes back as a megabyte-long error.
MAX_MESSAGE_CHARS = 300


def shorten(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text` cut to `limit` characters, marked with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


class ServingError(ValueError):
    """A request the model cannot answer; `status` is the HTTP status to send back."""

    status: int = 400

    def __init__(self, message: str):
        message = shorten(message)
        super().__init__(message)
        self.message = message

    def to_json(self) -> dict:
        return {"error": type(self).__name__, "status": self.status, "message": self.message}

    def body(self) -> str:
        """The answer's body, the same bytes from the local server and from the SageMaker handler."""
        return json.dumps(self.to_json())


class BadRequestError(ServingError):
    """Empty body, bytes that are not an image, malformed JSON, bad parameters."""

    status = 400


class RequestTimeoutError(ServingError):
    """The client stopped sending its body before the server's read timeout."""

    status = 408


class NotAcceptableError(ServingError):
    """The Accept header asks for a response type we do not produce."""

    status = 406


class PayloadTooLargeError(ServingError):
    """A body over the byte limit or an image over the pixel limit (decompression bombs)."""

    status = 413


class UnsupportedMediaTypeError(ServingError):
    """A Content-Type we do not decode."""

    status = 415


class ServiceUnavailableError(ServingError):
    """The server is saturated: the client should retry after `retry_after_s` seconds."""

    status = 503

    def __init__(self, message: str, retry_after_s: int = 1):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class InternalServerError(ServingError):
    """A fault of the server: the answer says so and nothing more (the log has the traceback)."""

    status = 500

    def __init__(self, message: str = "the server failed to answer this request; its log has the details"):
        super().__init__(message)
