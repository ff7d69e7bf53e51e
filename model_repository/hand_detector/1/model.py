"""Triton Python model ``hand_detector`` (cpu flavour): the detector ONNX on ONNX Runtime.

Requests that the dynamic batcher delivers together run as one batch. The native flavours
serve the same model.onnx on Triton's onnxruntime / tensorrt backends instead of this file.
"""

import triton_python_backend_utils as pb_utils

from gesture_recognition.artifacts import DETECTOR_JSON, read_detector_spec
from gesture_recognition.runtime import DetectorRunner
from gesture_recognition.serving import python_model as pm
from gesture_recognition.serving.steps import run_batched


class TritonPythonModel:
    def initialize(self, args):
        self.name = args["model_name"]
        folder = pm.version_dir(args)
        self.spec = read_detector_spec(folder / DETECTOR_JSON)
        threads = pm.int_parameter(args, "ORT_THREADS", 0) or None
        self.runner = DetectorRunner(folder / "model.onnx", self.spec, threads)

    def execute(self, requests):
        try:
            batches = [pm.input_array(pb_utils, r, self.spec.input_name) for r in requests]
            outputs = run_batched(self.runner, batches)
        except Exception as exc:
            return [pm.error_response(pb_utils, exc, self.name) for _ in requests]
        return [pm.response(pb_utils, {self.spec.output_name: out}) for out in outputs]
