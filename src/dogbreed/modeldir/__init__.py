"""the model folder: format, writer, reader, predictor, ONNX/INT8 versions, runtimes, archive."""
