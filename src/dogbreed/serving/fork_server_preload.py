"""Imported once by the fork server that starts the preprocessing workers (serving/preprocess_pool.py)."""

import gc

import dogbreed.serving.preprocess_pool  # noqa: F401  - torch, torchvision and Pillow, shared by every worker

gc.freeze()  # the collector never walks these objects, so a worker does not copy the pages holding them
