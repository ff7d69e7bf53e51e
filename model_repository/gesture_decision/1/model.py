"""Triton Python model ``gesture_decision``: logits of the hands -> the photo's gesture.

Drops the hands a hand verifier rejects when the classifier has one (HAND, its ``hand``
output), then softmax per hand and ``gesture_recognition.decision.decide``: the class with the
highest probability over all hands, ``no_gesture`` when there is no hand. Only the first N rows
of LOGITS (and HAND) are used, N = rows of CROP_BOXES (hand_crops pads an empty batch to one
dummy row). It answers the hands it keeps as HAND_BOXES / HAND_SCORES. The class order comes
from gesture_classifier.json (and labels.txt for GESTURE_PROBS).
"""

import triton_python_backend_utils as pb_utils

from gesture_recognition.artifacts import CLASSIFIER_JSON, read_classifier_spec
from gesture_recognition.serving import python_model as pm
from gesture_recognition.serving.contract import CROP_BOXES, CROP_SCORES, HAND, LOGITS
from gesture_recognition.serving.steps import decision_outputs


class TritonPythonModel:
    def initialize(self, args):
        self.name = args["model_name"]
        self.spec = read_classifier_spec(pm.version_dir(args) / CLASSIFIER_JSON)

    def execute(self, requests):
        return pm.respond_each(pb_utils, requests, self._handle, self.name)

    def _handle(self, request):
        hand = pm.input_array(pb_utils, request, HAND) if self.spec.verifier else None
        return decision_outputs(
            pm.input_array(pb_utils, request, LOGITS),
            pm.input_array(pb_utils, request, CROP_BOXES),
            pm.input_array(pb_utils, request, CROP_SCORES),
            self.spec,
            hand,
        )
