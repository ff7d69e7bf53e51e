"""Load testing and baselines: perf_analyzer against the served models, the same ONNX models
in-process, a naive PyTorch pipeline, and the original 2021 configuration (``gesture-bench``)."""
