"""The model folder: format (file names, is it one), writer, reader, predictor, ONNX/INT8 versions,
runtimes, the SageMaker archive."""
