"""edge.export: ONNX, full-int8 TFLite, TFLite Micro check, C array, parity (TensorFlow side)."""
