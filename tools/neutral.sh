#!/usr/bin/env bash
# Is a change number-neutral (a move, a rename, a refactor)? Runs the `smoke` profile of the given stages twice — at a
# git revision (default HEAD, unpacked with `git archive`; git itself is not touched) and in the working tree — into two
# scratch results folders, then compares every metrics file and table byte for byte, less the run info (the `run`
# block of metrics/*.json, the `run_*` columns of tables/*.csv, the footer line of tables/*.md) and wall-clock
# fields (keys and columns named like `train_s`, `sample s`, `images/s`, `ms/step`, `data_wait_share`, `peak memory`:
# they differ on every run).
# Prints `identical` or `different` per file and exits 1 when any file differs or exists on one side only.
#
# Only when every file is identical may the committed `cpu` results of these stages be kept without re-running them:
#   dvc commit <stage>@cpu        (updates the stage's lock entry to the new code and params)
# and the commit message says so, e.g. "number-neutral: tools/neutral.sh metrics vae identical; dvc commit vae@cpu".
#
# Usage: bash tools/neutral.sh [--rev REV] STAGE [STAGE ...]
#   Give the stages in pipeline order, with the earlier stages whose artifacts they read (e.g. `metrics vae`): each side
#   runs them in that order into its own folder. Needs the set-up of tools/setup.sh (.venv and data/).
set -euo pipefail
cd "$(dirname "$0")/.."
rev=HEAD
if [ "${1:-}" = "--rev" ]; then rev=$2; shift 2; fi
[ $# -gt 0 ] || { echo "usage: bash tools/neutral.sh [--rev REV] STAGE [STAGE ...]" >&2; exit 2; }
here=$PWD
scratch=$(mktemp -d "${TMPDIR:-/tmp}/neutral.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
mkdir "$scratch/before"
git archive "$rev" | tar -x -C "$scratch/before"
export DEEPGEN_DATA=${DEEPGEN_DATA:-$here/data} DEEPGEN_CACHE=${DEEPGEN_CACHE:-$here/.cache/deepgen} DVC_NO_ANALYTICS=1
unset DEEPGEN_OUT

run_side() {  # run_side NAME TREE: every stage at smoke, with TREE's library, into $scratch/results-NAME
  local name=$1 tree=$2 stage nb
  for stage in "${@:3}"; do
    nb=$(ls "$tree"/nbs/[0-9]*_"$stage".ipynb 2>/dev/null | head -1)
    [ -n "$nb" ] || { echo "neutral: no notebook for stage $stage in the $name tree" >&2; exit 2; }
    echo "neutral: $name: $stage@smoke"
    (cd "$tree" && DEEPGEN_ROOT="$tree" PYTHONPATH="$tree/lib" DEEPGEN_RESULTS="$scratch/results-$name" \
       "$here/.venv/bin/deepgen-run" "$nb" --profile smoke > "$scratch/$name-$stage.log" 2>&1) \
      || { echo "neutral: $stage@smoke failed in the $name tree:" >&2; tail -3 "$scratch/$name-$stage.log" >&2; exit 2; }
  done
}
run_side before "$scratch/before" "$@"
run_side after "$here" "$@"

"$here/.venv/bin/python" - "$scratch/results-before/smoke" "$scratch/results-after/smoke" <<'PY'
import io, json, re, sys
from pathlib import Path

import pandas as pd

before, after = Path(sys.argv[1]), Path(sys.argv[2])
CLOCK = re.compile(r"(^|[ _(])(s|ms|sec|seconds|wall|time|time_s|wall_s)([ _)]|$)|/s\b|/step\b|per_s|s_per_|speed|seconds|wait|peak_mem|memory")


def clock(name):
    return bool(CLOCK.search(str(name).lower()))


def strip_json(data):
    if isinstance(data, dict):
        return {k: strip_json(v) for k, v in data.items() if k != "run" and not clock(k)}
    return data


def strip_csv(text):
    df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    return df.drop(columns=[c for c in df if c.startswith("run_") or clock(c)]).to_csv(index=False)


def strip_md(text):
    lines, drop = [l for l in text.splitlines() if not l.startswith("<sub>profile `")], None
    out = []
    for line in lines:
        cells = line.split("|")[1:-1] if line.startswith("|") else None
        if cells is not None and drop is None:
            drop = {i for i, c in enumerate(cells) if clock(c.strip())}
        out.append("|".join(["", *[c for i, c in enumerate(cells) if i not in drop], ""]) if cells is not None else line)
        drop = None if cells is None else drop
    return "\n".join(out)


STRIP = {".json": lambda t: json.dumps(strip_json(json.loads(t)), indent=1, sort_keys=True), ".csv": strip_csv,
         ".md": strip_md}
files = sorted({p.relative_to(root) for root in (before, after) for kind in ("metrics", "tables")
                for p in (root / kind).rglob("*") if p.suffix in STRIP})
bad = 0
for rel in files:
    a, b = before / rel, after / rel
    if not (a.exists() and b.exists()):
        state = f"only {'before' if a.exists() else 'after'}"
    else:
        strip = STRIP[rel.suffix]
        state = "identical" if strip(a.read_text()) == strip(b.read_text()) else "different"
    bad += state != "identical"
    print(f"{state:>11}  {rel}")
print(f"neutral: {len(files) - bad} of {len(files)} files identical" + ("" if bad else " — the change is number-neutral"))
sys.exit(1 if bad or not files else 0)
PY
