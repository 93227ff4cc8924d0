#!/usr/bin/env bash
# Build the course website from the committed, executed notebooks and results into _site/ (offline, in seconds:
# nothing is re-run). The profile whose results it shows is the first argument (default cpu); --serve serves it.
#   bash tools/site.sh                 # results/cpu -> _site/_build/html/index.html
#   bash tools/site.sh smoke           # your own smoke run's results instead
#   bash tools/site.sh cpu --serve     # then open http://localhost:8000
set -euo pipefail
profile=${1:-cpu}
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ] || [ ! -d .cache/site-packages/jupyter_book ]; then bash tools/setup.sh; fi
.venv/bin/python tools/build_site.py --profile "$profile"
if [ "${2:-}" = --serve ]; then
  echo "site: serving on http://localhost:8000 (Ctrl-C stops)"
  .venv/bin/python -m http.server 8000 --bind 127.0.0.1 --directory _site/_build/html
fi
