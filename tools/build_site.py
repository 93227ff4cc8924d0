"""Build the course website from the committed, executed notebooks and results (Jupyter Book 1, offline).

    python tools/build_site.py [--profile cpu] [--out _site] [--no-build]

Writes the book's sources to `<out>/src` (generated: never edit them) and the HTML to `<out>/_build/html`:
- a home page with the reproduction scoreboard (the report's `tables/report/scoreboard.md`) and the course map
  (chapter → notebooks → models → datasets → figures/tables);
- one page per chapter (the claims its stages tested, then its figures and tables, from `results/<profile>/`, which
  `$DEEPGEN_RESULTS/<profile>` replaces when set) and, under it, its executed notebooks from
  `results/<profile>/notebooks/` (a notebook not yet run at that profile is shown from `nbs/`, without outputs);
- a "reproduce" page (commands, profiles, hardware, measured times) and the API reference (Sphinx autodoc).
Chapters come from `params.yaml` (`chapters:`) and the `nbs/` listing (`deepgen.report.course_notebooks`), so a new
chapter appears without changes here. Nothing is executed or trained: the build takes seconds.
Jupyter Book and its Sphinx stack live in `.cache/site-packages` (tools/setup.sh installs them from
tools/site-requirements.txt), MathJax 3 in `.cache/mathjax` (npm), so the pages render equations with no network.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
SITE_PACKAGES = ROOT / ".cache" / "site-packages"
MATHJAX = ROOT / ".cache" / "mathjax" / "node_modules" / "mathjax" / "es5"
TITLE = "Deep generative models: a reproducible course"


def chapter_title(chapter: str) -> str:
    "`core`, `report`, else the `chapters:` key: short keys are acronyms (`ddgan` → DDGAN), longer ones words."
    named = {"core": "Core: the course library", "report": "Course report"}
    return named.get(chapter) or (chapter.upper() if len(chapter) <= 5 and chapter.isalnum()
                                  else chapter.replace("_", " ").capitalize())


def place(stage, chapter, chapters) -> Path:
    "Where a stage's figures and tables live under `figures/` and `tables/` (as `Config.place`)."
    return Path(chapter, stage) if chapter in chapters else Path(stage)


def datasets_of(nb_path: Path, stage_params: dict, trilemma_sets: set) -> list[str]:
    "Datasets a notebook uses: names of `deepgen.data` datasets quoted in its code or in its parameters."
    from deepgen.data import IMAGE_DATASETS, TOYS
    code = "\n".join(c.source for c in nbformat.read(nb_path, as_version=4).cells if c.cell_type == "code")
    code += "\n" + json.dumps(stage_params)
    found = {name for name in (*IMAGE_DATASETS, *TOYS) if re.search(rf"[\"']{re.escape(name)}[\"']", code)}
    return sorted(found | trilemma_sets, key=lambda n: (n not in IMAGE_DATASETS, n))


CLAIMS = ("scoreboard.md", "claims.md")  # tables of verdicts (deepgen.claims), shown before a stage's figures


def table_markdown(md_path: Path, level: int | None) -> str:
    "A table written by `write_table`, with its `### title` moved to heading `level` (None: title left out)."
    text = md_path.read_text()
    if level is None:
        return re.sub(r"^#{1,6} .*\n+", "", text, count=1)
    return re.sub(r"^#{1,6} ", "#" * level + " ", text, flags=re.M)


def strip_outputs(nb):
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def write_notebook_page(nb_row, profile, results, src_dir) -> bool:
    "Copy the executed notebook (or the source one, with a note) to the book; True if it was executed."
    executed = results / "notebooks" / nb_row["notebook"]
    ran = executed.exists()
    nb = nbformat.read(executed if ran else ROOT / "nbs" / nb_row["notebook"], as_version=4)
    if not ran:
        note = nbformat.v4.new_markdown_cell(
            f":::{{note}}\nThis notebook has not been run at profile `{profile}` yet, so it is shown without outputs. "
            f"Run it with `dvc repro {nb_row['stage']}@{profile}`.\n:::")
        strip_outputs(nb).cells.insert(1, note)
    for i, cell in enumerate(nb.cells):
        cell.setdefault("id", f"cell{i}")
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags:  # papermill's copy of the parameters cell: noise on a page
            tags.append("remove-cell")
    nbformat.write(nb, src_dir / nb_row["notebook"])
    return ran


def chapter_page(chapter, nbs: pd.DataFrame, results, chapters, profile, src_dir, ran: dict) -> dict:
    "The chapter's index page: its notebooks, then every figure and table its stages published at `profile`."
    lines = [f"# {chapter_title(chapter)}", ""]
    lines += [f"The notebooks of this chapter, executed at profile `{profile}`, and the figures and tables they "
              f"published under `results/{profile}/`.", "",
              "| notebook | stage | title |", "|---|---|---|"]
    lines += [f"| [{r['notebook']}]({Path(r['notebook']).stem}.ipynb) | `{r['stage']}`"
              f"{'' if ran[r['stage']] else ' (not run yet)'} | {r['title']} |" for _, r in nbs.iterrows()]
    counts = {}
    for _, r in nbs.iterrows():
        where = place(r["stage"], chapter, chapters)
        figures = sorted((results / "figures" / where).glob("*.png"))
        claims = [results / "tables" / where / name for name in CLAIMS if (results / "tables" / where / name).exists()]
        tables = [t for t in sorted((results / "tables" / where).glob("*.md")) if t.name not in CLAIMS]
        counts[r["stage"]] = (len(figures), len(tables) + len(claims))
        if not figures and not tables and not claims:
            continue
        lines += ["", f"## {r['title']}", "", f"Stage `{r['stage']}` · notebook "
                  f"[{r['notebook']}]({Path(r['notebook']).stem}.ipynb) · `results/{profile}/{{figures,tables}}/{where}/`"]
        if claims:
            lines += ["", "### Claims", "", "Each claim of the paper this stage tests, with the comparison that decides "
                      "it and the verdict of this run (reproduced, partly, not reproduced, or not run at this profile)."]
        for table in claims:
            lines += ["", table_markdown(table, 4).rstrip()]
        if figures:
            lines += ["", "### Figures"]
        for fig in figures:
            target = src_dir / "figures" / r["stage"] / fig.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(fig, target)
            lines += ["", f"```{{figure}} figures/{r['stage']}/{fig.name}", f":name: fig-{r['stage']}-{fig.stem}",
                      f":alt: {fig.stem.replace('_', ' ')}", "", f"`{fig.stem}`", "```"]
        if tables:
            lines += ["", "### Tables"]
        for table in tables:
            lines += ["", table_markdown(table, 4).rstrip()]
    (src_dir / "index.md").write_text("\n".join(lines) + "\n")
    return counts


def home_page(course, results, params, profile, counts, ran, src) -> None:
    from deepgen.bench import gather_trilemma
    rows = gather_trilemma(results)
    lines = [f"# {TITLE}", "",
             "Notebooks that teach and define deep generative models, the Python library they export (`deepgen`), "
             "and a DVC pipeline that re-runs every notebook and regenerates every figure and table at a size that "
             f"fits your hardware. This site shows the committed results of profile `{profile}`: every notebook "
             "executed by the pipeline, with its figures and tables, and the course report that puts every model "
             "of the course side by side.", "",
             "Start with the [reproduce](reproduce.md) page to run it yourself, read the chapters in order, and use "
             "the [API reference](api/index.md) for the library.", ""]
    board = results / "tables" / "report" / "scoreboard.md"
    if board.exists():
        lines += ["## Reproduction scoreboard", "",
                  "Each chapter tests claims of its paper with a comparison written before the run, and the run decides "
                  f"the verdict. At profile `{profile}`, per chapter (the full list with every claim's reason is in the "
                  "[course report](report/index.md); each chapter page shows its own):", "",
                  table_markdown(board, None).rstrip(), ""]
    lines += ["## The course map", "",
             "Each chapter is a folder of notebooks; each notebook is one pipeline stage. Models are those the stage "
             "enters in the cross-family benchmark; datasets are those its code and parameters name.", "",
             "| chapter | notebook | models | datasets | figures | tables |", "|---|---|---|---|---|---|"]
    for chapter, nbs in course.groupby("chapter", sort=False):
        for i, (_, r) in enumerate(nbs.iterrows()):
            stage = r["stage"]
            models = ", ".join(dict.fromkeys(rows.loc[rows["stage"] == stage, "model"])) if len(rows) else ""
            sets = set(rows.loc[rows["stage"] == stage, "dataset"]) if len(rows) else set()
            data = ", ".join(datasets_of(ROOT / "nbs" / r["notebook"], params.get(stage, {}).get(profile, {}), sets))
            n_fig, n_tab = counts[stage]
            link = f"[{chapter_title(chapter)}]({chapter}/index.md)" if i == 0 else ""
            nb_link = f"[{r['title'].split(':')[0]}]({chapter}/{r['notebook']})" + ("" if ran[stage] else " *(not run yet)*")
            lines.append(f"| {link} | {nb_link} | {models or '—'} | {data or '—'} | {n_fig or '—'} | {n_tab or '—'} |")
    # The report's scatter has every chapter's models; before the report has run, a chapter's own scatter stands in.
    scatters = [results / "figures" / "report" / "trilemma_scatter.png",
                *sorted((results / "figures").glob("**/trilemma_scatter.png"))]
    scatter = next((p for p in scatters if p.exists()), None)
    if scatter:
        shutil.copy(scatter, src / "trilemma_scatter.png")
        lines += ["", "## Every model of the course, one budget", "",
                  "```{figure} trilemma_scatter.png", ":alt: trilemma scatter", "",
                  "Inception FID against sampling time, colored by recall, for every model of the course trained with "
                  "the shared budget (see the [course report](report/index.md)).", "```"]
    (src / "index.md").write_text("\n".join(lines) + "\n")


def reproduce_page(params, profile, results, src) -> None:
    runs = []
    for path in sorted((results / "metrics").glob("*.json")):
        run = json.loads(path.read_text()).get("run", {})
        runs.append(run)
    devices = sorted({r.get("device", "?") for r in runs})
    total = sum(r.get("wall_s", 0) or 0 for r in runs)
    lines = ["# Reproduce the course", "",
             "Two commands set everything up and check it (Python 3.11; safe to re-run):", "",
             "```bash", "bash tools/course.sh          # virtualenv, pinned packages, data; runs the course at `smoke`",
             "bash tools/test.sh            # the tests CI runs: unit tests, every notebook at smoke, this site", "```",
             "", "Then, inside the virtualenv (`source .venv/bin/activate`):", "",
             "```bash", "dvc repro --glob '*@cpu'      # every stage at one profile (bash tools/course.sh cpu)",
             "dvc repro report@cpu          # one stage, with what it depends on",
             "deepgen-run nbs/10_vae.ipynb --profile cpu --set toy_steps=500   # one run with one parameter changed",
             "bash tools/site.sh cpu        # this website, from the committed results (seconds)",
             "dvc metrics show              # every stage's metrics", "```", "",
             "## Profiles", "",
             "One code path, three sizes chosen by a parameter; each profile writes its own `results/<profile>/`.", "",
             "| profile | for | budget per stage | shared settings |", "|---|---|---|---|"]
    purpose = {"smoke": ("CI and tests: every code path, tiny sizes", "≤ 60 s per notebook on a CPU"),
               "cpu": ("the committed results", "≤ 15 min per stage on 2 CPU cores"),
               "full": ("closest to the papers", "≤ 10 min per stage on one H100")}
    for name, shared in params["profiles"].items():
        what, size = purpose.get(name, ("", ""))
        lines.append(f"| `{name}` | {what} | {size} | {', '.join(f'{k}={v}' for k, v in shared.items())} |")
    lines += ["", f"## Hardware and measured times (profile `{profile}`)", "",
              f"The results on this site were produced on: {', '.join(devices) or 'no run yet'}; the stages' own wall "
              f"times add up to {total / 60:.0f} min. Expect a recent laptop to be 2–4× faster, and the `full` "
              "profile to need a GPU."]
    for table in [results / "tables" / "report" / "stage_runs.md", results / "tables" / "bench" / "stage_wall_times.md"]:
        if table.exists():
            lines += ["", table_markdown(table, 3).rstrip()]
    (src / "reproduce.md").write_text("\n".join(lines) + "\n")


def api_pages(src) -> list[str]:
    modules = sorted(p.stem for p in (ROOT / "lib" / "deepgen").glob("*.py") if not p.stem.startswith("_"))
    (src / "api").mkdir()
    lines = ["# API reference", "", "The library `deepgen`, exported by nbdev from the notebooks' `#| export` cells; "
             "each module's documentation comes from its docstrings.", ""]
    lines += [f"- [`deepgen.{m}`]({m}.md)" for m in modules]
    (src / "api" / "index.md").write_text("\n".join(lines) + "\n")
    for m in modules:
        (src / "api" / f"{m}.md").write_text(f"# deepgen.{m}\n\n```{{eval-rst}}\n.. automodule:: deepgen.{m}\n"
                                             f"   :members:\n```\n")
    return modules


def book_config(src, mathjax: bool) -> None:
    sphinx_config = {"html_show_copyright": False, "html_show_sphinx": False, "autodoc_member_order": "bysource",
                     "autodoc_typehints": "none", "numfig": False, "nb_merge_streams": True, "suppress_warnings": ["myst.header"]}
    if mathjax:  # a relative mathjax_path is relative to _static/; html_extra_path copies mathjax/ to the site root
        sphinx_config |= {"mathjax_path": "../mathjax/tex-chtml.js", "html_extra_path": ["_extra"]}
    config = {"title": TITLE, "author": "Course authors", "copyright": "", "only_build_toc_files": True,
              "execute": {"execute_notebooks": "off"},
              "parse": {"myst_enable_extensions": ["amsmath", "colon_fence", "dollarmath"]},
              "html": {"use_repository_button": False, "use_issues_button": False, "use_edit_page_button": False},
              "launch_buttons": {"notebook_interface": "classic", "binderhub_url": "", "thebe": False},
              "sphinx": {"extra_extensions": ["sphinx.ext.autodoc"], "config": sphinx_config}}
    (src / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))


def generate(profile="cpu", out=ROOT / "_site") -> Path:
    "Write the book's sources for `profile` into `<out>/src`; return that folder."
    sys.path.insert(0, str(ROOT / "lib"))
    from deepgen.config import read_params, results_dir
    from deepgen.report import course_notebooks
    params, results = read_params(ROOT), results_dir(profile, ROOT)
    chapters = params.get("chapters") or {}
    course = course_notebooks(ROOT)
    src = Path(out) / "src"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    toc, counts, ran = [], {}, {}
    for chapter, nbs in course.groupby("chapter", sort=False):
        (src / chapter).mkdir()
        for _, r in nbs.iterrows():
            ran[r["stage"]] = write_notebook_page(r, profile, results, src / chapter)
        counts |= chapter_page(chapter, nbs, results, chapters, profile, src / chapter, ran)
        toc.append({"file": f"{chapter}/index",
                    "sections": [{"file": f"{chapter}/{Path(n).stem}"} for n in nbs["notebook"]]})
    home_page(course, results, params, profile, counts, ran, src)
    reproduce_page(params, profile, results, src)
    modules = api_pages(src)
    mathjax = MATHJAX.exists()
    if mathjax:
        shutil.copytree(MATHJAX, src / "_extra" / "mathjax")
    else:
        print(f"site: no local MathJax at {MATHJAX} (bash tools/setup.sh installs it): equations need the CDN",
              file=sys.stderr)
    book_config(src, mathjax)
    (src / "_toc.yml").write_text(yaml.safe_dump(
        {"format": "jb-book", "root": "index",
         "parts": [{"caption": "Course", "chapters": toc},
                   {"caption": "Reference", "chapters": [
                       {"file": "reproduce"},
                       {"file": "api/index", "sections": [{"file": f"api/{m}"} for m in modules]}]}]},
        sort_keys=False))
    not_run = [s for s, r in ran.items() if not r]
    print(f"site: {len(course)} notebooks in {course['chapter'].nunique()} chapters at profile {profile}"
          + (f"; not run yet at {profile}: {not_run}" if not_run else ""))
    return src


def build(src: Path, out: Path) -> Path:
    "Run Jupyter Book (from .cache/site-packages) on `src`; return the HTML folder."
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SITE_PACKAGES), str(ROOT / "lib"),
                                                       os.environ.get("PYTHONPATH", "")]), DEEPGEN_ROOT=str(ROOT))
    if not (SITE_PACKAGES / "jupyter_book").exists():
        sys.exit(f"site: Jupyter Book is not installed in {SITE_PACKAGES}: run bash tools/setup.sh")
    shutil.rmtree(out / "_build", ignore_errors=True)
    cmd = [sys.executable, "-c", "import sys; from jupyter_book.cli.main import main; sys.exit(main())",
           "build", str(src), "--path-output", str(out), "--builder", "html", "--quiet"]
    subprocess.run(cmd, env=env, check=True)
    return out / "_build" / "html"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", help="whose results to show (default: cpu, the committed ones)")
    parser.add_argument("--out", default=str(ROOT / "_site"), help="build folder (git-ignored)")
    parser.add_argument("--no-build", action="store_true", help="only write the book's sources")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    src = generate(args.profile, out)
    if not args.no_build:
        html = build(src, out)
        print(f"site: {html / 'index.html'}")


if __name__ == "__main__":
    main()
