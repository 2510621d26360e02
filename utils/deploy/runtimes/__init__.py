"""Backends for exported formats beyond ONNX / OpenVINO / TorchScript: one small Predictor class per runtime."""
