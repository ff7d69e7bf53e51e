"""The naive baseline: ultralytics ``predict`` and a timm model in eager PyTorch, one hand at a
time, the way a first prototype is written. Same decision rule and crops as the product, so the
only difference measured is how the models run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from gesture_recognition.artifacts import ClassifierSpec
from gesture_recognition.boxes import expanded_crops
from gesture_recognition.classifier_input import crops_to_batch
from gesture_recognition.decision import decide
from gesture_recognition.hands import DEFAULT_MAX_HANDS, order_hands


class NaiveTorchPipeline:
    def __init__(
        self,
        detector: object,
        classifier: object,
        spec: ClassifierSpec,
        imgsz: int,
        conf: float,
        max_hands: int = DEFAULT_MAX_HANDS,
        device: str = "cpu",
    ):
        self.detector, self.classifier, self.spec = detector, classifier, spec
        self.imgsz, self.conf, self.max_hands = imgsz, conf, max_hands
        self.device = device

    @classmethod
    def from_checkpoints(
        cls,
        detector_pt: Path,
        classifier_ckpt: Path,
        imgsz: int,
        conf: float,
        max_hands: int,
        device: str = "cpu",
    ) -> NaiveTorchPipeline:
        """The two checkpoints on ``device`` (``cpu``, ``cuda:0``, ...)."""
        from gesture_recognition.training.classifier_checkpoint import load_trained_classifier
        from gesture_recognition.training.offline import configure_offline

        configure_offline()
        from ultralytics import YOLO

        if not detector_pt.is_file():
            raise FileNotFoundError(f"detector checkpoint not found: {detector_pt}")
        model, spec = load_trained_classifier(classifier_ckpt)
        return cls(YOLO(str(detector_pt)), model.to(device), spec, imgsz, conf, max_hands, device)

    def __call__(self, image: NDArray[np.uint8]) -> str:
        import torch

        # ultralytics takes numpy images as OpenCV BGR.
        result = self.detector.predict(  # type: ignore[attr-defined]
            image[..., ::-1], imgsz=self.imgsz, conf=self.conf, device=self.device, verbose=False
        )[0]
        boxes = result.boxes.xyxy.cpu().numpy().astype(np.float32)
        scores = result.boxes.conf.cpu().numpy().astype(np.float32)
        boxes, scores = order_hands(boxes, scores, self.max_hands)
        probs = []
        with torch.no_grad():
            for crop in expanded_crops(image, boxes, self.spec.crop) if len(boxes) else []:
                x = crops_to_batch([crop], self.spec.input_size, self.spec.mean, self.spec.std)
                logits = self.classifier(torch.from_numpy(x).to(self.device))  # type: ignore[operator]
                # .cpu() waits for the GPU: each photo's time includes its whole work.
                probs.append(torch.softmax(logits, dim=1)[0].cpu().numpy())
        table = np.stack(probs) if probs else np.zeros((0, self.spec.label_map.num_classes))
        return decide(table.astype(np.float32), self.spec.label_map).gesture
