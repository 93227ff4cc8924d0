#!/usr/bin/env bash
# Install what is missing, then run the tests: the library's unit tests and every notebook at the smoke profile.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
export PATH="$PWD/.venv/bin:$PATH" DVC_NO_ANALYTICS=1
exec python -m pytest tests "$@"
