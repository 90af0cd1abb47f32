"""Bounded waiting: past `max_queue` images admitted and not yet answered, a request is refused at once
(503 with Retry-After) instead of joining a queue whose latency would grow without limit.

A request counts as one image from the moment it is admitted (before its body is read) and as its real
number of images once decoded; it stops counting when answered. A request arriving at an empty queue is
always admitted, whatever its size (`limits.max_images` bounds it). The counter lives on the event loop,
which alone changes it: no lock.
"""

from __future__ import annotations

from dogbreed.serving.errors import ServiceUnavailableError


class AdmissionLimit:
    def __init__(self, max_images: int | None, retry_after_s: int = 1):
        if max_images is not None and max_images < 1:
            raise ValueError(f"max_queue={max_images} must be at least 1 (or null: no limit)")
        self.max_images = max_images
        self.retry_after_s = retry_after_s
        self.waiting = 0

    def reserve(self, images: int) -> None:
        """Count `images` more, or raise ServiceUnavailableError when they would overfill the queue."""
        if self.max_images is not None and self.waiting and self.waiting + images > self.max_images:
            raise ServiceUnavailableError(
                f"the server is saturated ({self.waiting} images waiting, at most {self.max_images}): "
                f"retry after {self.retry_after_s} s",
                retry_after_s=self.retry_after_s,
            )
        self.waiting += images

    def release(self, images: int) -> None:
        self.waiting -= images

    def resize(self, held: int, images: int) -> None:
        """Replace a reservation of `held` images by one of `images` (released if refused)."""
        self.release(held)
        self.reserve(images)
