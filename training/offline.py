"""Make ultralytics work with no network: no downloads, no settings in the user's home.

Must run before ``ultralytics`` is imported (it reads the environment at import time).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def configure_offline(config_dir: Path | None = None) -> Path:
    """Point ultralytics at a per-project config folder and switch off every download."""
    cfg = Path(
        config_dir or os.environ.get("YOLO_CONFIG_DIR") or repo_root() / ".cache" / "ultralytics"
    )
    cfg.mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_CONFIG_DIR"] = str(cfg)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "False"
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("YOLO_VERBOSE", "True")
    _provide_font(cfg / "Ultralytics")
    return cfg


def _provide_font(folder: Path) -> None:
    # ultralytics' plotting downloads Arial.ttf when it is missing, OFFLINE or not; any TTF
    # does, and matplotlib ships DejaVuSans.
    folder.mkdir(parents=True, exist_ok=True)
    wanted = [folder / "Arial.ttf", folder / "Arial.Unicode.ttf"]
    if all(p.is_file() for p in wanted):
        return
    import matplotlib

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for path in wanted:
        if not path.is_file():
            shutil.copyfile(source, path)
