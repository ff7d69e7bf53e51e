"""Triton Python model ``hand_detector`` (cpu flavour): IMAGE -> output0 [1, D, 6], LETTERBOX [3].

Letterboxes the photo onto the detector's canvas (the photo's aspect, sides multiples of the
stride; see ``gesture_recognition.letterbox``) and runs the detector ONNX on ONNX Runtime in one
step, with the second pass on a larger canvas when hand_detector.json asks for one
(``gesture_recognition.detector_passes``; LETTERBOX is then the placement of the pass that
answered): on the cpu flavour every step is a Python model, and a separate letterbox model cost a
round trip of the 1.2 MB input tensor through the stub (reports/perf/cpu). The
native flavours serve model.onnx on Triton's onnxruntime / tensorrt backends behind the
``hand_preprocess`` model instead of this file.
"""

import triton_python_backend_utils as pb_utils

from gesture_recognition.artifacts import DETECTOR_JSON, read_detector_spec
from gesture_recognition.images import DEFAULT_MAX_PIXELS
from gesture_recognition.runtime import DetectorRunner
from gesture_recognition.serving import python_model as pm
from gesture_recognition.serving.contract import IMAGE, LETTERBOX, MAX_PIXELS
from gesture_recognition.serving.steps import detect
from gesture_recognition.serving.thread_gate import gated_runner


class TritonPythonModel:
    def initialize(self, args):
        self.name = args["model_name"]
        folder = pm.version_dir(args)
        self.spec = read_detector_spec(folder / DETECTOR_JSON)
        self.max_pixels = pm.int_parameter(args, MAX_PIXELS, DEFAULT_MAX_PIXELS, minimum=64)
        self.runner = gated_runner(args, DetectorRunner, self.spec)

    def execute(self, requests):
        return pm.respond_each(pb_utils, requests, self._handle, self.name)

    def _handle(self, request):
        image = pm.input_array(pb_utils, request, IMAGE)
        rows, placement = detect(image, self.spec, self.max_pixels, self.runner)
        return {self.spec.output_name: rows, LETTERBOX: placement}
