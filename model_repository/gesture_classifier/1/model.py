"""Triton Python model ``gesture_classifier`` (cpu flavour): the classifier ONNX on ONNX Runtime.

One request carries all hand crops of one photo ([N, 3, C, C]). The native flavours serve the
same model.onnx on Triton's onnxruntime / tensorrt backends instead of this file.
"""

import triton_python_backend_utils as pb_utils

from gesture_recognition.artifacts import CLASSIFIER_JSON, read_classifier_spec
from gesture_recognition.runtime import ClassifierRunner
from gesture_recognition.serving import python_model as pm


class TritonPythonModel:
    def initialize(self, args):
        self.name = args["model_name"]
        folder = pm.version_dir(args)
        self.spec = read_classifier_spec(folder / CLASSIFIER_JSON)
        threads = pm.int_parameter(args, "ORT_THREADS", 0) or None
        self.runner = ClassifierRunner(folder / "model.onnx", self.spec, threads)

    def execute(self, requests):
        return pm.respond_each(pb_utils, requests, self._handle, self.name)

    def _handle(self, request):
        batch = pm.input_array(pb_utils, request, self.spec.input_name)
        return {self.spec.output_name: self.runner(batch)}
