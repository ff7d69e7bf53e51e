"""Triton Python model ``gesture_decision``: logits of the hands -> the photo's gesture.

Softmax per hand, then ``gesture_recognition.decision.decide``: the class with the highest
probability over all hands, ``no_gesture`` when there is no hand. Only the first N rows of
LOGITS are used, N = rows of HAND_BOXES (hand_crops pads an empty batch to one dummy row).
The class order comes from gesture_classifier.json (and labels.txt for GESTURE_PROBS).
"""

import triton_python_backend_utils as pb_utils

from gesture_recognition.artifacts import CLASSIFIER_JSON, read_classifier_spec
from gesture_recognition.serving import python_model as pm
from gesture_recognition.serving.contract import HAND_BOXES, LOGITS
from gesture_recognition.serving.steps import decision_outputs


class TritonPythonModel:
    def initialize(self, args):
        self.name = args["model_name"]
        self.label_map = read_classifier_spec(pm.version_dir(args) / CLASSIFIER_JSON).label_map

    def execute(self, requests):
        return pm.respond_each(pb_utils, requests, self._handle, self.name)

    def _handle(self, request):
        return decision_outputs(
            pm.input_array(pb_utils, request, LOGITS),
            pm.input_array(pb_utils, request, HAND_BOXES),
            self.label_map,
        )
