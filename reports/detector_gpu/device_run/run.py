"""Three detector runs side by side on one GPU; each on its own copy of the packed photos."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = Path(os.environ.get("OUT", "/tmp/out"))
WORK = Path(os.environ.get("WORK", "/tmp/gpuwork"))
HOURS = os.environ.get("HOURS", "0.115")
DEVICE = os.environ.get("DEVICE", "0")
EXTRA = os.environ.get("EXTRA", "").split()
AUG = [
    "--aug",
    "degrees=10",
    "--aug",
    "scale=0.6",
    "--aug",
    "flipud=0.1",
    "--aug",
    "close_mosaic=8",
]
ARMS = {
    # name: (all digit photos?, extra augmentation, freeze blocks)
    "gpu_f4": (False, [], "4"),
    "gpu_f4_digits": (True, [], "4"),
    "gpu_f4_rot30": (False, ["--aug", "degrees=30"], "4"),
}


def data_yaml(root: Path, all_digits: bool) -> Path:
    d = root / "data"
    quarter = [ln for ln in (d / "sld_quarter_names.txt").read_text().split() if ln]
    listing = root / "sld_quarter.txt"
    listing.write_text("".join(f"{d}/sld_teacher/images/train/{s}.jpg\n" for s in quarter))
    digits = f"{d}/sld_teacher/images/train" if all_digits else str(listing)
    hagrid = f"{d}/hagrid_teacher/images/train"
    lines = [
        "train:",
        f"- {d}/hands_v1/images/train",
        *[f"- {hagrid}"] * 4,
        f"- {digits}",
        "val:",
        f"- {d}/hands_v1/images/val",
        f"- {d}/hagrid_teacher/images/val",
        "names:",
        "  0: hand",
    ]
    path = root / "data.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


DEADLINE = float(os.environ.get("DEADLINE", "1e9"))  # seconds after start: stop what still runs


def launch(name: str, workers: str) -> subprocess.Popen:
    all_digits, aug, freeze = ARMS[name]
    root = WORK / name
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(HERE / "data", root / "data")
    yaml = data_yaml(root, all_digits)
    cmd = [
        sys.executable,
        str(HERE / "train_one.py"),
        "train-detector",
        "--data",
        str(yaml),
        "--model",
        str(HERE / "init" / "shipped.pt"),
        "--freeze-blocks",
        freeze,
        "--imgsz",
        "320",
        "--epochs",
        "200",
        "--hours",
        HOURS,
        "--batch",
        "32",
        "--device",
        DEVICE,
        "--patience",
        "300",
        "--lr0",
        "0.0003",
        "--warmup-epochs",
        "0",
        *AUG,
        *aug,
        "--project",
        str(WORK / "runs"),
        "--name",
        name,
        *EXTRA,
    ]
    (WORK / "logs").mkdir(parents=True, exist_ok=True)
    log = open(WORK / "logs" / f"{name}.log", "a")  # noqa: SIM115 (the child writes to it)
    print(f"workers={workers}", " ".join(cmd), file=log, flush=True)
    print("started", name, f"workers={workers}", flush=True)
    return subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "WORKERS": workers}
    )


start = time.time()
procs = {name: launch(name, os.environ.get("WORKERS", "4")) for name in ARMS}
retried: set[str] = set()
while procs:
    time.sleep(2)
    for name, p in list(procs.items()):
        code = p.poll()
        if code is None and time.time() - start > DEADLINE:
            p.terminate()
            print(name, "stopped at the deadline", flush=True)
            p.wait()
            del procs[name]
        elif code is not None:
            print(name, "exit", code, f"{time.time() - start:.0f} s", flush=True)
            del procs[name]
            # A start-up failure (e.g. too little shared memory for loader workers): once more
            # without worker processes.
            if code != 0 and time.time() - start < 150 and name not in retried:
                retried.add(name)
                procs[name] = launch(name, "0")
for name in ARMS:
    run = WORK / "runs" / name
    for f in ("last.pt", "best.pt"):
        if (run / "weights" / f).is_file():
            shutil.copyfile(run / "weights" / f, OUT / f"{name}_{f}")
    if (run / "results.csv").is_file():
        shutil.copyfile(run / "results.csv", WORK / "logs" / f"{name}_results.csv")
subprocess.run(["tar", "czf", str(OUT / "logs.tgz"), "-C", str(WORK), "logs"], check=False)
print(sorted(p.name for p in OUT.iterdir()), flush=True)
