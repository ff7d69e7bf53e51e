#!/usr/bin/env bash
# The long soak: a local Triton on free loopback ports, steady load over gRPC and HTTP on both
# entry points, zero failed requests and bounded memory of tritonserver and its Python-backend
# stubs; measurements written to reports/reliability/soak.md (markdown).
#   scripts/soak.sh                       # 300 s at concurrency 4
#   SOAK_S=3600 SOAK_CONCURRENCY=8 scripts/soak.sh --out reports/reliability/soak-1h.md
# The functional suite runs the same soak for GESTURE_SOAK_S seconds (default 60).
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
exec python -m gesture_recognition.serving.soak \
    --duration "${SOAK_S:-300}" --concurrency "${SOAK_CONCURRENCY:-4}" "$@"
