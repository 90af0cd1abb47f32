"""Data: ImageFolder splits, robust image loading, the embedded synthetic set and the download."""

from __future__ import annotations

from typing import Any

# Imported lazily so `python -m dogbreed.data download` and the image helpers need not load Lightning.
_EXPORTS = {
    "DogBreedDataModule": "dogbreed.data.datamodule",
    "DataLayoutError": "dogbreed.data.layout",
    "BadImageError": "dogbreed.data.images",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
