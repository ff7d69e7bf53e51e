#!/usr/bin/env bash
# The main job on a fresh machine: install the serving side into .venv, build the Triton model
# repository from the shipped models, start the local Triton, classify the sample photos over
# gRPC and HTTP, and stop the server. Needs nothing outside this repository.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh serve
. .venv/bin/activate

HTTP_PORT="${HTTP_PORT:-8000}"
GRPC_PORT="${GRPC_PORT:-8001}"
METRICS_PORT="${METRICS_PORT:-8002}"
LOG="$(mktemp -t gesture-serve.XXXXXX.log)"

echo "== starting gesture-serve (log: $LOG)"
gesture-serve --http-port "$HTTP_PORT" --grpc-port "$GRPC_PORT" --metrics-port "$METRICS_PORT" \
  >"$LOG" 2>&1 &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT

for _ in $(seq 1 180); do
  if python - "$HTTP_PORT" <<'PY' 2>/dev/null; then break; fi
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/v2/health/ready", timeout=1)
PY
  if ! kill -0 "$SERVER" 2>/dev/null; then
    echo "gesture-serve exited; its log:" >&2; tail -n 40 "$LOG" >&2; exit 1
  fi
  sleep 1
done

echo "== classify samples/ over gRPC (encoded bytes, decoded on the server)"
gesture-client samples --protocol grpc --url "127.0.0.1:$GRPC_PORT"
echo "== classify samples/ over HTTP (raw pixels)"
gesture-client samples --protocol http --url "127.0.0.1:$HTTP_PORT" --raw
