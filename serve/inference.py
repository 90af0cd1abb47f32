"""SageMaker inference entry point (shipped as code/inference.py inside model.tar.gz).

The PyTorch inference container puts code/ on sys.path; code/dogbreed holds the modules of this project's
package that inference imports (copied by `dogbreed.modeldir.archive`), so the container needs no extra pip
install of the project.
"""

from dogbreed.serving.handler import model_fn, transform_fn

__all__ = ["model_fn", "transform_fn"]
