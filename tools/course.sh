#!/usr/bin/env bash
# Set everything up and regenerate the whole course with DVC at a profile: smoke (default), cpu, full, or all.
#   bash tools/course.sh            # smoke: minutes on any machine
#   bash tools/course.sh cpu        # the committed CPU results (<= 15 min per stage on 2 cores)
#   bash tools/course.sh full       # the GPU results (<= 10 min per stage on one H100)
set -euo pipefail
profile=${1:-smoke}
case "$profile" in
  smoke|cpu|full|all) ;;
  *) echo "course: unknown profile '$profile': use smoke, cpu, full or all" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
bash tools/setup.sh
export PATH="$PWD/.venv/bin:$PATH" DVC_NO_ANALYTICS=1
if [ "$profile" = all ]; then dvc repro; else dvc repro --glob "*@$profile"; fi
echo "course: figures and tables are under results/$profile/ (dvc metrics show; dvc plots show)"
