#!/usr/bin/env bash
# Make the perf_analyzer of the tritonclient==2.50.0 wheel runnable in .venv (no root needed):
# it links libcudart.so.12 (pip: nvidia-cuda-runtime-cu12, the `bench` extra) and libb64.so.0d,
# which only Debian packages; the .deb is downloaded and unpacked into .venv/opt/libb64.
# gesture-bench points LD_LIBRARY_PATH at both (see benchmarks/perf_analyzer.py).
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
LIBDIR=".venv/opt/libb64"
if [ ! -f "$LIBDIR/usr/lib/x86_64-linux-gnu/libb64.so.0d" ]; then
  if ldconfig -p 2>/dev/null | grep -q 'libb64.so.0d'; then
    echo "== libb64.so.0d found on the system"
  else
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    # apt-get download needs no root, but does need package lists; refresh them when allowed.
    if ! (cd "$tmp" && apt-get download libb64-0d >/dev/null 2>&1); then
      if [ "$(id -u)" = 0 ]; then
        apt-get update -qq >/dev/null
        (cd "$tmp" && apt-get download libb64-0d >/dev/null 2>&1)
      else
        echo "cannot download Debian's libb64-0d: run 'sudo apt-get install libb64-0d'" >&2
        exit 1
      fi
    fi
    mkdir -p "$LIBDIR"
    dpkg-deb -x "$tmp"/libb64-0d_*.deb "$LIBDIR"
    echo "== libb64 unpacked into $LIBDIR"
  fi
fi
python - <<'PY'
from gesture_recognition.benchmarks.perf_analyzer import check_runs
check_runs()
print("== perf_analyzer runs")
PY
