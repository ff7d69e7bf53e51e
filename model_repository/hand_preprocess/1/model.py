"""Triton Python model ``hand_preprocess``: IMAGE -> DETECTOR_INPUT [1, 3, h, w], LETTERBOX [3].

Letterboxes the photo onto the detector's canvas (size and stride from hand_detector.json in
this version folder) and reports where it was placed so ``hand_crops`` can map boxes back.
"""

import triton_python_backend_utils as pb_utils

from gesture_recognition.artifacts import DETECTOR_JSON, read_detector_spec
from gesture_recognition.images import DEFAULT_MAX_PIXELS
from gesture_recognition.serving import contract as c
from gesture_recognition.serving import python_model as pm
from gesture_recognition.serving.steps import preprocess


class TritonPythonModel:
    def initialize(self, args):
        self.name = args["model_name"]
        self.spec = read_detector_spec(pm.version_dir(args) / DETECTOR_JSON)
        self.max_pixels = pm.int_parameter(args, c.MAX_PIXELS, DEFAULT_MAX_PIXELS, minimum=64)

    def execute(self, requests):
        return pm.respond_each(pb_utils, requests, self._handle, self.name)

    def _handle(self, request):
        image = pm.input_array(pb_utils, request, c.IMAGE)
        tensor, placement = preprocess(image, self.spec, self.max_pixels)
        return {c.DETECTOR_INPUT: tensor, c.LETTERBOX: placement}
