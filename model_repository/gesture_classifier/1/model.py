"""Triton Python model ``gesture_classifier`` (cpu flavour): crops + CROP_BOXES/SCORES -> answer.

Runs the classifier ONNX on ONNX Runtime over all hand crops of one photo ([N, 3, C, C]) and
then the decision (``steps.decision_outputs``: a hand verifier's rejects dropped when the
classifier has one, softmax per hand, highest probability over all hands, ``no_gesture``
without hands; only the first N = rows of CROP_BOXES logits count). The decision lives here
rather than in its own model because on the cpu flavour each extra Python model is another
round trip through the stub. ``logits`` (and the verifier's ``hand``) are answered too, for
callers that want the raw scores. The native flavours serve model.onnx on Triton's onnxruntime
/ tensorrt backends, followed by the ``gesture_decision`` model, instead of this file.
"""

import triton_python_backend_utils as pb_utils

from gesture_recognition.artifacts import CLASSIFIER_JSON, read_classifier_spec
from gesture_recognition.runtime import ClassifierRunner
from gesture_recognition.serving import python_model as pm
from gesture_recognition.serving.contract import CROP_BOXES, CROP_SCORES
from gesture_recognition.serving.steps import decision_outputs
from gesture_recognition.serving.thread_gate import gated_runner


class TritonPythonModel:
    def initialize(self, args):
        self.name = args["model_name"]
        folder = pm.version_dir(args)
        self.spec = read_classifier_spec(folder / CLASSIFIER_JSON)
        self.runner = gated_runner(args, ClassifierRunner, self.spec)

    def execute(self, requests):
        return pm.respond_each(pb_utils, requests, self._handle, self.name)

    def _handle(self, request):
        batch = pm.input_array(pb_utils, request, self.spec.input_name)
        logits, hand = self.runner.logits_and_hand(batch)
        outputs = decision_outputs(
            logits,
            pm.input_array(pb_utils, request, CROP_BOXES),
            pm.input_array(pb_utils, request, CROP_SCORES),
            self.spec,
            hand,
        )
        outputs[self.spec.output_name] = logits
        if self.spec.verifier is not None:
            outputs[self.spec.verifier.output_name] = hand.reshape(-1, 1)
        return outputs
