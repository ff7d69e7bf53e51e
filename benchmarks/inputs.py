"""perf_analyzer input data from real photos, for the ensembles and for every composing model.

Each model gets the tensors it really receives inside the ensemble: the photos are run through
the serving steps in-process (``serving.steps``, the code the Python-backend models run) and
each model's inputs are looked up through the ensemble's own step maps, so a renamed tensor in
``serving.configs`` cannot leave the benchmark sending stale names.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from tritonclient.grpc.model_config_pb2 import ModelConfig

from gesture_recognition.images import DEFAULT_MAX_PIXELS, decode_image
from gesture_recognition.pipeline import GesturePipeline
from gesture_recognition.serving import steps
from gesture_recognition.serving.contract import ENSEMBLE_BYTES

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


def tensor_entry(array: np.ndarray) -> dict[str, object]:
    """A non-string tensor in perf_analyzer's JSON: raw little-endian bytes as base64 + shape."""
    data = np.ascontiguousarray(array)
    if data.dtype.byteorder == ">":
        data = data.astype(data.dtype.newbyteorder("<"))
    return {
        "content": {"b64": base64.b64encode(data.tobytes()).decode("ascii")},
        "shape": list(data.shape),
    }


def bytes_entry(items: Sequence[bytes]) -> dict[str, object]:
    """A BYTES tensor: Triton's serialisation (4-byte little-endian length + bytes per element)
    as base64 — encoded photos are not text, so perf_analyzer's plain string form cannot carry
    them."""
    raw = b"".join(struct.pack("<I", len(item)) + item for item in items)
    return {"content": {"b64": base64.b64encode(raw).decode("ascii")}, "shape": [len(items)]}


def decode_bytes_entry(entry: dict[str, object]) -> list[bytes]:
    """Inverse of :func:`bytes_entry` (tests and sanity checks)."""
    content = entry["content"]
    assert isinstance(content, dict)
    raw = base64.b64decode(content["b64"])
    items, offset = [], 0
    while offset < len(raw):
        (size,) = struct.unpack_from("<I", raw, offset)
        items.append(raw[offset + 4 : offset + 4 + size])
        offset += 4 + size
    return items


def decode_tensor_entry(entry: dict[str, object], dtype: np.dtype) -> np.ndarray:
    content, shape = entry["content"], entry["shape"]
    assert isinstance(content, dict) and isinstance(shape, list)
    flat = np.frombuffer(base64.b64decode(content["b64"]), dtype=dtype)
    return flat.reshape(shape)


@dataclass(frozen=True)
class PhotoTensors:
    """Every tensor of one photo's trip through the ensemble, by ensemble tensor name."""

    name: str
    tensors: dict[str, np.ndarray | bytes]
    hands: int

    def encoded(self) -> bytes:
        """The photo's file as read (the bytes ensemble's input)."""
        data = self.tensors["IMAGE_BYTES"]
        if not isinstance(data, bytes):
            raise TypeError(f"{self.name}: IMAGE_BYTES holds {type(data).__name__}, not bytes")
        return data


def trace_photo(
    pipeline: GesturePipeline, path: Path, max_hands: int, max_pixels: int = DEFAULT_MAX_PIXELS
) -> PhotoTensors:
    """Run one photo through the serving steps in-process, keeping every intermediate."""
    data = path.read_bytes()
    image = decode_image(data, max_pixels)
    det_spec, cls_spec = pipeline.detector.spec, pipeline.classifier.spec
    detector_input, letterbox = steps.preprocess(image, det_spec, max_pixels)
    detections = pipeline.detector(detector_input)
    boxes, scores, classifier_input = steps.crop_hands(
        image, detections, letterbox, det_spec.conf_threshold, cls_spec, max_hands, max_pixels
    )
    logits, hand = pipeline.classifier.logits_and_hand(classifier_input)
    verifier = {} if hand is None else {"hand": hand.reshape(-1, 1)}
    return PhotoTensors(
        name=path.name,
        tensors={
            "IMAGE_BYTES": data,
            "IMAGE": image,
            "image": image,
            "detector_input": detector_input,
            "letterbox": letterbox,
            "detections": detections,
            "classifier_input": classifier_input,
            "logits": logits,
            "crop_boxes": boxes,
            "crop_scores": scores,
            **verifier,
        },
        hands=len(boxes),
    )


def _entry(value: np.ndarray | bytes, batched: bool) -> dict[str, object]:
    if isinstance(value, bytes):
        return bytes_entry([value])
    if not batched:
        return tensor_entry(value)
    # Batching models take one row per request; perf_analyzer adds the batch axis.
    if value.shape[0] != 1:
        raise ValueError(f"a batched input must hold one row per photo, got {value.shape}")
    return tensor_entry(value[0])


def model_input_sources(configs: dict[str, ModelConfig]) -> dict[str, dict[str, str]]:
    """model -> {model input name -> ensemble tensor name}, read off the bytes ensemble (which
    runs every composing model) plus the two entry points."""
    bytes_ensemble = configs[ENSEMBLE_BYTES]
    sources: dict[str, dict[str, str]] = {}
    for step in bytes_ensemble.ensemble_scheduling.step:
        sources.setdefault(step.model_name, dict(step.input_map))
    for config in configs.values():
        if config.platform == "ensemble":
            sources[config.name] = {t.name: t.name for t in config.input}
    return sources


def input_data(
    config: ModelConfig, sources: dict[str, str], photos: Iterable[PhotoTensors]
) -> dict[str, object]:
    """perf_analyzer's ``--input-data`` JSON for one model: one step per photo.

    A photo whose tensor for this model is empty (``CROP_BOXES [0, 4]`` of a photo without a
    hand, which the ensemble does pass to the classifier) is left out of this model's data:
    perf_analyzer 2.50 dies with SIGSEGV on a zero-element input.
    """
    batched = config.max_batch_size > 0
    data = []
    for photo in photos:
        step = {}
        for tensor in config.input:
            source = sources[tensor.name]
            if source not in photo.tensors:
                raise KeyError(f"{config.name}.{tensor.name} needs {source!r}, not traced")
            value = photo.tensors[source]
            if isinstance(value, np.ndarray) and value.size == 0:
                break
            step[tensor.name] = _entry(value, batched)
        else:
            data.append(step)
    if not data:
        raise ValueError(f"no photo gives {config.name} a non-empty input")
    return {"data": data}


def write_input_data(
    configs: dict[str, ModelConfig],
    photos: Sequence[PhotoTensors],
    out_dir: Path,
    models: Iterable[str] | None = None,
) -> dict[str, Path]:
    """One JSON per model under ``out_dir``; returns model -> file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = model_input_sources(configs)
    written = {}
    for name in models if models is not None else configs:
        path = out_dir / f"{name}.json"
        path.write_text(json.dumps(input_data(configs[name], sources[name], photos)))
        written[name] = path
    return written


def find_photos(folder: Path, limit: int) -> list[Path]:
    """Up to ``limit`` photos of a folder, in name order (the same set for every series)."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no photos ({', '.join(PHOTO_SUFFIXES)}) in {folder}")
    return files[:limit]


def image_array(photo: PhotoTensors) -> NDArray[np.uint8]:
    image = photo.tensors["IMAGE"]
    assert isinstance(image, np.ndarray)
    return image
