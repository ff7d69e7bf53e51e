"""Triton Python model ``hand_crops``: detector rows -> hand boxes, scores and classifier input.

Runs ``gesture_recognition.hands.prepare_hands``, the code training cuts its crops with: decode
the rows (confidence threshold from hand_detector.json), keep at most MAX_HANDS hands (the most
confident; a config parameter), order them topmost first, expand, crop and normalise them as
gesture_classifier.json says. With no hand, CLASSIFIER_INPUT carries one dummy row (see
``serving.steps.crop_hands``).
"""

import triton_python_backend_utils as pb_utils

from gesture_recognition.artifacts import (
    CLASSIFIER_JSON,
    DETECTOR_JSON,
    read_classifier_spec,
    read_detector_spec,
)
from gesture_recognition.hands import DEFAULT_MAX_HANDS
from gesture_recognition.images import DEFAULT_MAX_PIXELS
from gesture_recognition.serving import contract as c
from gesture_recognition.serving import python_model as pm
from gesture_recognition.serving.steps import crop_hands


class TritonPythonModel:
    def initialize(self, args):
        self.name = args["model_name"]
        folder = pm.version_dir(args)
        self.detector = read_detector_spec(folder / DETECTOR_JSON)
        self.classifier = read_classifier_spec(folder / CLASSIFIER_JSON)
        self.max_hands = pm.int_parameter(args, c.MAX_HANDS, DEFAULT_MAX_HANDS, minimum=1)
        self.max_pixels = pm.int_parameter(args, c.MAX_PIXELS, DEFAULT_MAX_PIXELS, minimum=64)

    def execute(self, requests):
        return pm.respond_each(pb_utils, requests, self._handle, self.name)

    def _handle(self, request):
        boxes, scores, batch = crop_hands(
            pm.input_array(pb_utils, request, c.IMAGE),
            pm.input_array(pb_utils, request, c.DETECTIONS),
            pm.input_array(pb_utils, request, c.LETTERBOX),
            self.detector.conf_threshold,
            self.classifier,
            self.max_hands,
            self.max_pixels,
        )
        return {c.HAND_BOXES: boxes, c.HAND_SCORES: scores, c.CLASSIFIER_INPUT: batch}
