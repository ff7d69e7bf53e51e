"""The served contract: model, tensor and parameter names. Clients import these; the configs
(``serving.configs``) and the Python-backend models use the same constants.

Two entry points: ``gesture_ensemble`` takes ``IMAGE`` UINT8 ``[H, W, 3]`` (RGB pixels);
``gesture_ensemble_bytes`` takes ``IMAGE_BYTES`` BYTES ``[1]`` (an encoded JPEG/PNG, decoded
on the server). Both answer ``ENSEMBLE_OUTPUTS``. These names are kept stable (README).
"""

from __future__ import annotations

# Repository flavours: ``cpu`` runs every step in Triton's Python backend (the binary the
# nvidia-pytriton wheel carries); ``onnxruntime`` and ``tensorrt`` run the two networks on
# Triton's native backends (the NGC container).
FLAVOURS = ("cpu", "onnxruntime", "tensorrt")

# The models of the repository.
IMAGE_DECODER = "image_decoder"
HAND_PREPROCESS = "hand_preprocess"
HAND_DETECTOR = "hand_detector"
HAND_CROPS = "hand_crops"
GESTURE_CLASSIFIER = "gesture_classifier"
GESTURE_DECISION = "gesture_decision"
ENSEMBLE = "gesture_ensemble"
ENSEMBLE_BYTES = "gesture_ensemble_bytes"

# Entry-point inputs.
IMAGE = "IMAGE"
IMAGE_BYTES = "IMAGE_BYTES"
# The ensembles' outputs, in the order the README documents them.
GESTURE = "GESTURE"
SCORE = "SCORE"
HAND_BOXES = "HAND_BOXES"
HAND_SCORES = "HAND_SCORES"
HAND_GESTURES = "HAND_GESTURES"
HAND_GESTURE_SCORES = "HAND_GESTURE_SCORES"
GESTURE_PROBS = "GESTURE_PROBS"
ENSEMBLE_OUTPUTS = (
    GESTURE,
    SCORE,
    HAND_BOXES,
    HAND_SCORES,
    HAND_GESTURES,
    HAND_GESTURE_SCORES,
    GESTURE_PROBS,
)

# Tensors between the steps (the networks' own tensor names come from their spec JSONs).
DETECTOR_INPUT = "DETECTOR_INPUT"
LETTERBOX = "LETTERBOX"
DETECTIONS = "DETECTIONS"
CLASSIFIER_INPUT = "CLASSIFIER_INPUT"
LOGITS = "LOGITS"
# The decision step's inputs: every hand the crop step cut (its HAND_BOXES / HAND_SCORES), and
# with a hand verifier the classifier's ``hand`` probabilities; it answers the hands it keeps.
CROP_BOXES = "CROP_BOXES"
CROP_SCORES = "CROP_SCORES"
HAND = "HAND"

# Config parameters the Python-backend models read.
MAX_PIXELS = "MAX_PIXELS"
MAX_BYTES = "MAX_BYTES"
MAX_HANDS = "MAX_HANDS"
ORT_THREADS = "ORT_THREADS"
ORT_GATE = "ORT_GATE"
# The ensembles' parameter with the class order of GESTURE_PROBS (a JSON list): a
# label_filename cannot be fetched through Triton's API, a model config can.
LABELS_PARAMETER = "labels"
# The same order as a Triton label file beside the model that decides.
LABELS_FILE = "labels.txt"
