"""The ImageNet classifier: any ONNX model and how it wants its pixels."""
