"""Stand-ins for the client tests: the ensemble's answers as tritonclient returns them."""

from __future__ import annotations

import json
import socket

import numpy as np
from tritonclient.grpc import InferResult as GrpcInferResult
from tritonclient.grpc import service_pb2
from tritonclient.http import InferResult as HttpInferResult
from tritonclient.utils import serialize_byte_tensor

from gesture_recognition.client.results import parse_outputs
from gesture_recognition.labels import load_label_map
from gesture_recognition.pipeline import GestureResult

LABELS = load_label_map("mcs2021").classes


def closed_port() -> int:
    """A localhost port with nothing listening (bound and released: refused at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answer(n_hands: int, k: int = len(LABELS), seed: int = 0) -> dict[str, np.ndarray]:
    """The ensemble's outputs for a photo with ``n_hands`` hands, as the server shapes them."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 300, (n_hands, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(10, 100, (n_hands, 2))], axis=1)
    probs = rng.dirichlet(np.ones(k)).astype(np.float32)
    names = [LABELS[i % len(LABELS)].encode() for i in rng.integers(0, k, n_hands)]
    gesture = names[0] if names else b"no_gesture"
    return {
        "GESTURE": np.array([gesture], dtype=np.object_),
        "SCORE": np.array([probs.max()], np.float32),
        "HAND_BOXES": boxes.astype(np.float32).reshape(n_hands, 4),
        "HAND_SCORES": rng.uniform(0, 1, n_hands).astype(np.float32),
        "HAND_GESTURES": np.array(names, dtype=np.object_),
        "HAND_GESTURE_SCORES": rng.uniform(0, 1, n_hands).astype(np.float32),
        "GESTURE_PROBS": probs,
    }


def grpc_result(outputs: dict[str, np.ndarray]) -> GrpcInferResult:
    response = service_pb2.ModelInferResponse(model_name="gesture_ensemble")
    for name, array in outputs.items():
        out = response.outputs.add(name=name, shape=list(array.shape))
        if array.dtype == np.object_:
            out.datatype = "BYTES"
            serialized = serialize_byte_tensor(array)
            response.raw_output_contents.append(serialized.item() if serialized.size else b"")
        else:
            out.datatype = "FP32"
            response.raw_output_contents.append(array.tobytes())
    return GrpcInferResult(response)


def http_result(outputs: dict[str, np.ndarray]) -> HttpInferResult:
    body = {
        "model_name": "gesture_ensemble",
        "outputs": [
            {
                "name": name,
                "datatype": "BYTES" if array.dtype == np.object_ else "FP32",
                "shape": list(array.shape),
                "data": [v.decode() for v in array.reshape(-1)]
                if array.dtype == np.object_
                else array.reshape(-1).tolist(),
            }
            for name, array in outputs.items()
        ],
    }
    return HttpInferResult.from_response_body(json.dumps(body).encode())


def gesture_result(n_hands: int, width: int, height: int) -> GestureResult:
    outputs = answer(n_hands, seed=3)
    boxes = outputs["HAND_BOXES"] % [width, height, width, height]
    outputs["HAND_BOXES"] = np.sort(boxes.reshape(-1, 2, 2), axis=1).reshape(-1, 4)
    return parse_outputs(outputs.get, LABELS)
