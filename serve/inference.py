"""SageMaker inference entry point (shipped as code/inference.py inside model.tar.gz).

The PyTorch inference container puts code/ on sys.path; code/dogbreed is a copy of this project's
package made by `dogbreed.serving.packaging`, so the container needs no extra pip install.
"""

from dogbreed.serving.handler import model_fn, transform_fn

__all__ = ["model_fn", "transform_fn"]
