#!/usr/bin/env bash
# Install what is missing, then run the tests: the library's unit tests and every notebook at the smoke profile.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
export PATH="$PWD/.venv/bin:$PATH" DVC_NO_ANALYTICS=1
# Notebooks are committed clean: fail when nbdev_clean would change one (it cleans a copy; nbs/ is not touched).
copy=$(mktemp -d) && trap 'rm -rf "$copy"' EXIT
cp nbs/*.ipynb "$copy"/ && nbdev_clean --fname "$copy" >/dev/null
dirty=$(for nb in nbs/*.ipynb; do cmp -s "$nb" "$copy/${nb##*/}" || echo -n " $nb"; done)
[ -z "$dirty" ] || { echo "test: nbdev_clean would change$dirty: run nbdev_clean --fname <notebook> and commit" >&2; exit 1; }
python -m pytest tests "$@"
