"""dogbreed: fine-tune a pretrained ResNet to classify dog breeds, locally or on Amazon SageMaker."""

__version__ = "0.1.0"
