#!/usr/bin/env bash
# Create .venv at the repository root and install the project into it.
#   scripts/bootstrap.sh serve   -> serving + clients only (onnxruntime, Triton binary, tritonclient)
#   scripts/bootstrap.sh all     -> everything: training (torch, ultralytics, timm) and the tests
#   scripts/bootstrap.sh teacher -> .venv-teacher: MediaPipe Hands (the box teacher) + this
#                                   package; its opencv-contrib-python and protobuf<5 would
#                                   clash with ultralytics' opencv-python in .venv
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-serve}"
PY="${PYTHON:-python3}"
if [ "$what" = teacher ]; then
  if [ ! -x .venv-teacher/bin/python ]; then
    echo "== creating .venv-teacher with $($PY --version)"
    "$PY" -m venv .venv-teacher
  fi
  LOG=".venv-teacher/bootstrap.log"
  if ! .venv-teacher/bin/python -m pip install -q -e ".[teacher]" >"$LOG" 2>&1; then
    tail -n 40 "$LOG" >&2
    echo "pip install -e .[teacher] failed (full log: $LOG)" >&2
    exit 1
  fi
  echo "== .venv-teacher ready (MediaPipe Hands teacher)"
  exit 0
fi
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
. .venv/bin/activate
# pip's output goes to a log and is shown only when a step fails.
LOG=".venv/bootstrap.log"
: >"$LOG"
pip_install() {
  if ! python -m pip install "$@" >>"$LOG" 2>&1; then
    tail -n 40 "$LOG" >&2
    echo "pip install $* failed (full log: $LOG)" >&2
    exit 1
  fi
}
pip_install -q --upgrade pip
case "$what" in
  serve)
    pip_install -q -e ".[serve]"
    ;;
  all)
    # torch/torchvision are pinned to the builds that import together on these hosts; pip picks
    # them from the local wheel store when present, PyPI otherwise.
    pip_install -q "torch==2.14.1" "torchvision==0.29.1"
    pip_install -q -e ".[serve,train,dev,bench,video,web]"
    scripts/install_perf_analyzer.sh
    scripts/install_browser.sh
    ;;
  *)
    echo "usage: scripts/bootstrap.sh serve|all|teacher" >&2
    exit 2
    ;;
esac
echo "== .venv ready ($what)"
