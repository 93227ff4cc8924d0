"The course report's helpers (deepgen.report) and its DVC stage: chapters, errata, seeds, benchmark rows."
import nbformat
import pandas as pd
import pytest
import yaml

from conftest import ROOT
from deepgen.config import read_params
from deepgen.report import (course_notebooks, cross_family, errata_in, gather_errata, gather_paper_vs_ours, seed_of,
                            short_number, stage_runs)


@pytest.fixture
def project(tmp_path):
    "A two-chapter project: a core notebook, a chapter of two stages with an erratum, and one results folder."
    (tmp_path / "nbs").mkdir()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"chapters": {"toys": ["alpha", "beta"]}}))
    texts = {"00_core.ipynb": "# Core: the base\n\nNo errata.",
             "20_alpha.ipynb": "# Alpha\n\n> **Erratum.** The paper prints $q(x|y)$;\n> it is $q(y|x)$.\n\nText.",
             "21_beta.ipynb": "Intro without a heading.\n\n> **Erratum (signs).** E, not −E.",
             "40_solo.ipynb": "# Solo chapter"}
    for name, text in texts.items():
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(text), nbformat.v4.new_code_cell("1")])
        nbformat.write(nb, tmp_path / "nbs" / name)
    return tmp_path


def test_course_notebooks_reads_chapters_from_params_and_nbs(project):
    course = course_notebooks(project)
    assert course["stage"].tolist() == ["core", "alpha", "beta", "solo"]
    assert course["chapter"].tolist() == ["core", "toys", "toys", "solo"]  # <10: core; unlisted later: its own
    assert course["title"].tolist() == ["Core: the base", "Alpha", "21_beta", "Solo chapter"]


def test_errata_are_gathered_from_the_notebooks_with_their_chapter(project):
    errata = gather_errata(project)
    assert errata[["chapter", "notebook", "topic"]].values.tolist() == [["toys", "20_alpha.ipynb", None],
                                                                        ["toys", "21_beta.ipynb", "signs"]]
    assert errata["erratum"].tolist() == ["The paper prints $q(x|y)$; it is $q(y|x)$.", "E, not −E."]
    assert errata_in("> **Erratum.** one\n>\n> not part of it") == [{"topic": None, "erratum": "one"}]
    assert errata_in("> **Note.** not an erratum") == []


def test_every_course_erratum_note_is_found():
    "Each `**Erratum` in the course's notebooks' Markdown is one gathered erratum (none lost to its formatting)."
    errata = gather_errata(ROOT)
    flagged = sum(line.lstrip().startswith("> **Erratum")
                  for nb in (ROOT / "nbs").glob("[0-9][0-9]_*.ipynb")
                  for cell in nbformat.read(nb, as_version=4).cells if cell.cell_type == "markdown"
                  for line in cell.source.splitlines())
    assert len(errata) == flagged and errata["erratum"].str.len().min() > 20


def test_paper_vs_ours_rows_are_grouped_by_the_seed_their_source_names(project, tmp_path):
    course = course_notebooks(project)
    table = tmp_path / "results" / "tables" / "toys" / "alpha"
    table.mkdir(parents=True)
    pd.DataFrame({"quantity": ["FID", "NLL", "modes"], "paper": ["3.2", "1.1", ""],
                  "source": ["thesis Table 6.1", "DDN paper, Table 1", "—"], "ours": ["262.95239751927414", "2", "8"],
                  "scale": "tiny", "run_profile": "cpu"}).to_csv(table / "paper_vs_ours.csv", index=False)
    (table.parent.parent / "other").mkdir()  # a table in another format is left alone
    pd.DataFrame({"paper model": ["DDPM"]}).to_csv(table.parent.parent / "other" / "paper_vs_ours.csv", index=False)
    rows = gather_paper_vs_ours(tmp_path / "results", course, {"thesis": "T", "DDN": "D"})
    assert rows["seed"].tolist() == ["thesis", "DDN", None] and set(rows["chapter"]) == {"toys"}
    assert rows["ours"].map(short_number).tolist() == ["263", "2", "8"]
    assert seed_of("Xiao thesis §4.4", {"thesis": "T"}) == "thesis" and seed_of("antithesis", {"thesis": "T"}) is None


def test_benchmark_rows_carry_their_chapter_and_missing_runs_show(project, tmp_path):
    course = course_notebooks(project)
    table = tmp_path / "results" / "tables" / "toys" / "beta"
    table.mkdir(parents=True)
    pd.DataFrame({"model": ["m"], "dataset": ["mnist"], "inception_fid": [1.0]}).to_csv(table / "trilemma.csv",
                                                                                        index=False)
    rows = cross_family(tmp_path / "results", course)
    assert rows[["chapter", "stage", "model"]].values.tolist() == [["toys", "beta", "m"]]
    runs = stage_runs(tmp_path / "results", course)
    assert not runs["ran"].any() and len(runs) == len(course)


def test_report_stage_depends_on_every_chapter_stage():
    "dvc repro reruns the report when any chapter's tables or any stage's metrics change."
    params, stages = read_params(ROOT), yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    deps = stages["report"]["do"]["deps"]
    for _, nb in course_notebooks(ROOT).iterrows():  # stages with a notebook (a chapter may list planned ones)
        if nb["stage"] != "report":
            assert f"results/${{key}}/metrics/{nb['stage']}.json" in deps, nb["stage"]
        if nb["chapter"] in params["chapters"]:
            assert f"results/${{key}}/tables/{nb['chapter']}/{nb['stage']}" in deps, nb["stage"]
    assert "nbs" in deps and "lib/deepgen/report.py" in deps  # the errata come from the notebooks
