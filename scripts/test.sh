#!/usr/bin/env bash
# Install everything into .venv and run the whole test suite (unit + live Triton server).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh all
# The MediaPipe teacher's own environment; its tests skip with the reason if this fails.
scripts/bootstrap.sh teacher || echo "warning: .venv-teacher not created: teacher tests skip" >&2
. .venv/bin/activate
ruff check .
python scripts/typecheck.py  # mypy over the whole installed package
exec python -m pytest -ra "$@"
