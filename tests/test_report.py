"The course report's helpers (deepgen.report) and its DVC stage: chapters, errata, seeds, benchmark rows, scoreboard."
import nbformat
import pandas as pd
import pytest
import yaml

from conftest import ROOT
from deepgen.claims import CLAIM_COLUMNS
from deepgen.config import read_params
from deepgen.plots import paper_vs_ours, short_number, write_table
from deepgen.report import (benchmark_table, course_claims, course_notebooks, course_scoreboard, cross_family, errata_in,
                            gather_errata, gather_paper_vs_ours, seed_of, stage_runs)


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
    assert rows["kind"].tolist() == ["—"] * 3  # a table written before kinds existed
    assert seed_of("Xiao thesis §4.4", {"thesis": "T"}) == "thesis" and seed_of("antithesis", {"thesis": "T"}) is None


def test_paper_vs_ours_has_kinds_one_number_format_and_one_scale_note(project, results):
    "Rows sorted by kind (closed forms first), numbers with 4 digits, a bad kind rejected, the scale note once in the .md."
    from deepgen.config import start_stage
    table = paper_vs_ours([{"quantity": "FID", "paper": 3.75, "source": "thesis Table 6.1", "ours": 262.95239751927414},
                           {"quantity": "NFE", "kind": "closed form", "paper": 4, "source": "thesis Table 6.1", "ours": 4},
                           {"quantity": "modes", "kind": "qualitative", "paper": "all", "source": "Fig. 6.9", "ours": None},
                           {"quantity": "time ratio", "kind": "scale-free ratio", "paper": 19.1, "source": "x", "ours": 11.23}],
                          scale="ours: tiny")
    assert table["kind"].tolist() == ["closed form", "scale-free ratio", "scale gap", "qualitative"]  # no kind: a gap
    assert table["ours"].tolist() == ["4", "11.23", "263", "—"] and set(table["scale"]) == {"ours: tiny"}
    with pytest.raises(ValueError, match="kind must be one of"):
        paper_vs_ours([{"quantity": "q", "kind": "exact", "paper": 1, "source": "s", "ours": 1}], scale="s")
    cfg = start_stage("plots", "smoke")
    write_table(table, cfg, "paper_vs_ours", note="ours: tiny")
    md = (cfg.table_dir / "paper_vs_ours.md").read_text()
    assert md.count("ours: tiny") == 1 and "scale" not in md.splitlines()[0]
    csv = pd.read_csv(cfg.table_dir / "paper_vs_ours.csv", dtype=str, keep_default_na=False)
    assert (csv["scale"] == "ours: tiny").all() and csv.columns[:6].tolist() == ["quantity", "kind", "paper", "source",
                                                                                "ours", "scale"]
    rows = gather_paper_vs_ours(cfg.out, course_notebooks(project), {"thesis": "T"})  # the report reads it back
    assert rows.loc[rows["quantity"] == "NFE", "kind"].tolist() == ["closed form"]


def test_scoreboard_counts_every_chapter_in_course_order(project, tmp_path):
    "Claims are gathered in course order; a chapter that ran with no claims yet shows zeros; the total adds up."
    course, results = course_notebooks(project), tmp_path / "results"
    for folder, verdicts in [("toys/beta", ["reproduced", "not reproduced"]), ("core", ["partly"])]:
        (results / "tables" / folder).mkdir(parents=True)
        pd.DataFrame([[f"c{i}", "s", "src", "m", "1", "2", v, "w"] for i, v in enumerate(verdicts)],
                     columns=CLAIM_COLUMNS).to_csv(results / "tables" / folder / "claims.csv", index=False)
    claims = course_claims(results, course)
    assert claims[["chapter", "stage"]].values.tolist() == [["core", "core"], ["toys", "beta"], ["toys", "beta"]]
    runs = stage_runs(results, course).assign(ran=True)
    board = course_scoreboard(claims, runs).set_index("chapter")
    assert board.index.tolist() == ["core", "toys", "solo", "all"]
    assert board.loc["toys", ["claims", "reproduced", "not reproduced"]].tolist() == [2, 1, 1]
    assert board.loc["solo", "claims"] == 0 and board.loc["all", "stages with claims"] == "2 of 4"


def test_benchmark_table_has_reference_rows_and_whole_counts(project, tmp_path):
    "The metrics stage's reference rows join the benchmark (stage metrics), sorted by FID with the models."
    course, results = course_notebooks(project), tmp_path / "results"
    (results / "tables" / "toys" / "beta").mkdir(parents=True)
    (results / "tables" / "metrics").mkdir(parents=True)
    pd.DataFrame({"model": ["m"], "family": ["vae"], "dataset": ["mnist"], "params": [1234], "inception_fid": [50.0],
                  "kid": [0.1]}).to_csv(results / "tables" / "toys" / "beta" / "trilemma.csv", index=False)
    pd.DataFrame({"model": ["real test images", "uniform noise"], "family": "reference", "dataset": "mnist",
                  "inception_fid": [10.0, 400.0], "kid": [0.0, 0.5]}).to_csv(
        results / "tables" / "metrics" / "benchmark_references.csv", index=False)
    table = benchmark_table(cross_family(results, course), "mnist")
    assert table["model"].tolist() == ["real test images", "m", "uniform noise"] and "kid" in table
    assert table["stage"].tolist() == ["metrics", "beta", "metrics"] and table["params"].tolist()[1] == 1234


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
    # the scoreboard gathers the core stages' claims; the benchmark's reference rows come from the metrics stage
    assert {"lib/deepgen/claims.py", "results/${key}/tables/metrics", "results/${key}/tables/bench"} <= set(deps)
