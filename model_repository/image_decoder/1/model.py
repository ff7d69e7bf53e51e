"""Triton Python model ``image_decoder``: IMAGE_BYTES (encoded JPEG/PNG) -> IMAGE uint8 [H, W, 3].

The first step of ``gesture_ensemble_bytes``: clients send the file (tens of KB) instead of the
decoded pixels (about 1 MB for 640x480). Undecodable bytes are answered with INVALID_ARG.
"""

import triton_python_backend_utils as pb_utils

from gesture_recognition.images import DEFAULT_MAX_IMAGE_BYTES, DEFAULT_MAX_PIXELS
from gesture_recognition.serving import contract as c
from gesture_recognition.serving import python_model as pm
from gesture_recognition.serving.steps import decode_bytes_input


class TritonPythonModel:
    def initialize(self, args):
        self.name = args["model_name"]
        self.max_pixels = pm.int_parameter(args, c.MAX_PIXELS, DEFAULT_MAX_PIXELS, minimum=64)
        self.max_bytes = pm.int_parameter(args, c.MAX_BYTES, DEFAULT_MAX_IMAGE_BYTES, minimum=1)

    def execute(self, requests):
        return pm.respond_each(pb_utils, requests, self._handle, self.name)

    def _handle(self, request):
        data = pm.input_array(pb_utils, request, c.IMAGE_BYTES)
        return {c.IMAGE: decode_bytes_input(data, self.max_pixels, self.max_bytes)}
