"""Triton's own cost around the served models, measured.

The served pipeline's time at concurrency 1 is the models' work plus what Triton adds around
it: the client's transport, the ensemble's scheduling and one Python-backend stub round trip
per step. To tell the two apart, the floor repository keeps the served ensemble and every
composing model's ``config.pbtxt`` as they are (same tensors, instances and parameters) but
gives each composing model a ``model.py`` that reads its inputs and answers with the outputs the
real model gave for one photo (recorded from the live server). Served this way, a request
costs everything Triton does and none of the networks' or pre-processing's work.

The same replay served a tiny photo in place of the real ones splits that floor in two: what
each request costs whatever it carries, and what moving the photo costs (the client's transport
and a copy into every Python-backend step that takes it: the detector's and the crop step's).
The replayed answers do not depend on the photo, so only the bytes moved differ.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from gesture_recognition.serving.repository import ModelConfig

from .inputs import PhotoTensors, model_input_sources, tensor_entry

ANSWERS = "answers.npz"
# The tiny photo of the split floor: height, width (any size the ensemble accepts would do).
SMALL_PHOTO_SHAPE = (48, 64)
SMALL_PHOTO_LABEL = f"{SMALL_PHOTO_SHAPE[1]}x{SMALL_PHOTO_SHAPE[0]}"  # width x height

REPLAY_MODEL = '''"""Replays recorded answers (gesture-bench's Triton floor): reads every input
as the real model does, computes nothing, answers with the outputs in answers.npz."""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        folder = Path(args["model_repository"]) / args["model_version"]
        with np.load(folder / "answers.npz", allow_pickle=False) as saved:
            # BYTES outputs are stored as fixed-width bytes; Triton wants object arrays.
            self.answers = {
                name: saved[name].astype(object) if saved[name].dtype.kind == "S" else saved[name]
                for name in saved.files
            }
        self.inputs = [t["name"] for t in json.loads(args["model_config"])["input"]]

    def execute(self, requests):
        responses = []
        for request in requests:
            for name in self.inputs:
                pb_utils.get_input_tensor_by_name(request, name).as_numpy()
            tensors = [pb_utils.Tensor(name, value) for name, value in self.answers.items()]
            responses.append(pb_utils.InferenceResponse(tensors))
        return responses
'''


def replay_photo(photos: list[PhotoTensors]) -> PhotoTensors:
    """The photo whose answers are replayed: the first with one hand (the typical photo of the
    benchmark set), else the first with any hand, else the first."""
    for wanted in (lambda p: p.hands == 1, lambda p: p.hands > 0, lambda p: True):
        for photo in photos:
            if wanted(photo):
                return photo
    raise ValueError("no photos to record answers for")


def step_models(configs: Mapping[str, ModelConfig], ensemble: str) -> list[str]:
    return [step.model_name for step in configs[ensemble].steps]


def record_answers(
    grpc_url: str,
    configs: Mapping[str, ModelConfig],
    ensemble: str,
    photo: PhotoTensors,
) -> dict[str, dict[str, np.ndarray]]:
    """Each composing model's outputs for ``photo``, asked of the live server model by model."""
    import tritonclient.grpc as grpcclient

    sources = model_input_sources(dict(configs))
    answers: dict[str, dict[str, np.ndarray]] = {}
    with grpcclient.InferenceServerClient(grpc_url) as client:
        for name in step_models(configs, ensemble):
            config = configs[name]
            inputs = []
            for tensor in config.inputs:
                value = np.asarray(photo.tensors[sources[name][tensor.name]])
                item = grpcclient.InferInput(tensor.name, list(value.shape), tensor.data_type)
                item.set_data_from_numpy(value)
                inputs.append(item)
            wanted = [grpcclient.InferRequestedOutput(t.name) for t in config.outputs]
            result = client.infer(name, inputs, outputs=wanted)
            answers[name] = {t.name: result.as_numpy(t.name) for t in config.outputs}
    return answers


def _storable(value: np.ndarray) -> np.ndarray:
    if value.dtype == object:
        items = [v if isinstance(v, bytes) else str(v).encode() for v in value.flat]
        return np.array(items, dtype=bytes).reshape(value.shape)
    return value


def build_floor_repository(
    served: Path,
    ensemble: str,
    answers: Mapping[str, Mapping[str, np.ndarray]],
    out: Path,
) -> Path:
    """``out``: the served repository's ``ensemble`` and its composing models' configs (and
    label files), each model answering with its recorded ``answers``."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copytree(served / ensemble, out / ensemble)
    for name, outputs in answers.items():
        target = out / name
        target.mkdir()
        for item in (served / name).iterdir():
            if item.is_file():  # config.pbtxt, labels.txt; not the version folder
                shutil.copy2(item, target / item.name)
        version = target / "1"
        version.mkdir()
        (version / "model.py").write_text(REPLAY_MODEL, encoding="utf-8")
        np.savez(version / ANSWERS, **{k: _storable(v) for k, v in outputs.items()})
    return out


def write_small_photo_input(
    image_input: str, path: Path, shape: tuple[int, int] = SMALL_PHOTO_SHAPE
) -> Path:
    """perf_analyzer input data for the ensemble holding one tiny grey photo as ``image_input``."""
    photo = np.full((*shape, 3), 128, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"data": [{image_input: tensor_entry(photo)}]}), encoding="utf-8")
    return path
