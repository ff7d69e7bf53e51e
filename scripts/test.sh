#!/usr/bin/env bash
# Install everything into .venv and run the whole test suite (unit + live Triton server).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh all
. .venv/bin/activate
ruff check .
python scripts/typecheck.py  # mypy over the whole installed package
exec python -m pytest -ra "$@"
