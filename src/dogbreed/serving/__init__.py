"""Serving the exported model: request decoding, responses, the SageMaker handler, the local server.

Submodules are imported on demand: the SageMaker handler needs neither FastAPI nor uvicorn.
"""
