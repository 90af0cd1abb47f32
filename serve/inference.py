"""SageMaker inference entry point (shipped as code/inference.py inside model.tar.gz).

The PyTorch inference container puts code/ on sys.path; code/dogbreed is a copy of this project's
package made by `dogbreed.serving.packaging`, so the container needs no extra pip install.
"""

from dogbreed.serving.handler import input_fn, model_fn, output_fn, predict_fn

__all__ = ["model_fn", "input_fn", "predict_fn", "output_fn"]
