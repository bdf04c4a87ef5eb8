"""Helpers shared by onnxtrim's tests: torch export of the model zoo and ONNX/onnxruntime utilities."""
