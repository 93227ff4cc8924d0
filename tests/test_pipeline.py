"The course as a whole: nbdev export in sync, pipeline definition, every notebook at smoke, reproducible smoke metrics."
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from conftest import ROOT
from deepgen.config import read_params, run_notebook, stage_of

NOTEBOOKS = sorted((ROOT / "nbs").glob("[0-9][0-9]_*.ipynb"))


def test_nbdev_export_leaves_no_diff(tmp_path):
    "Exporting the notebooks in a copy of the project reproduces lib/ exactly."
    for item in ("settings.ini", "nbs"):
        (shutil.copytree if (ROOT / item).is_dir() else shutil.copy)(ROOT / item, tmp_path / item)
    subprocess.run([str(Path(sys.executable).with_name("nbdev_export"))], cwd=tmp_path, check=True, capture_output=True)
    made = {p.relative_to(tmp_path / "lib"): p.read_text() for p in (tmp_path / "lib").rglob("*.py")}
    ours = {p.relative_to(ROOT / "lib"): p.read_text() for p in (ROOT / "lib").rglob("*.py")}
    assert made.keys() == ours.keys()
    assert [k for k in made if made[k] != ours[k]] == []


def test_every_notebook_has_a_parameters_cell_a_stage_and_a_params_section():
    params, stages = read_params(ROOT), yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for nb_path in NOTEBOOKS:
        nb = nbformat.read(nb_path, as_version=4)
        assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells), nb_path.name
        stage = stage_of(nb_path)
        assert stage in stages and nb_path.name in stages[stage]["do"]["cmd"], stage
        assert set(params[stage]) == {"smoke", "cpu", "full"}, stage


def test_dvc_pipeline_defines_every_stage_at_every_profile():
    out = subprocess.run([str(Path(sys.executable).with_name("dvc")), "stage", "list"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    for nb_path in NOTEBOOKS:
        for profile in ("smoke", "cpu", "full"):
            assert f"{stage_of(nb_path)}@{profile}" in out


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory):
    "Run every notebook at smoke, in order, into a temporary results folder."
    import os
    results = tmp_path_factory.mktemp("results")
    os.environ["DEEPGEN_RESULTS"] = str(results)
    try:
        for nb in NOTEBOOKS:
            run_notebook(nb, "smoke", root=ROOT)
    finally:
        os.environ.pop("DEEPGEN_RESULTS")
    return results / "smoke"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_at_smoke_and_records_its_run(smoke_results, nb):
    metrics = json.loads((smoke_results / "metrics" / f"{stage_of(nb)}.json").read_text())
    assert metrics["run"]["profile"] == "smoke" and metrics["run"]["seed"] == 0
    assert (smoke_results / "notebooks" / nb.name).exists()


def test_smoke_run_is_reproducible(smoke_results, tmp_path, monkeypatch):
    "The same seed gives the same smoke metrics."
    monkeypatch.setenv("DEEPGEN_RESULTS", str(tmp_path))
    run_notebook(ROOT / "nbs" / "04_train.ipynb", "smoke", root=ROOT)
    first = json.loads((smoke_results / "metrics" / "train.json").read_text())
    second = json.loads((tmp_path / "smoke" / "metrics" / "train.json").read_text())
    assert first["final_loss"] == second["final_loss"]


def test_evaluator_reads_the_metrics_stage_references(smoke_results, monkeypatch):
    "A chapter's evaluator works for every dataset the metrics stage prepared, with the counts it used."
    from deepgen.config import start_stage
    from deepgen.data import load_images
    from deepgen.metrics import Evaluator
    monkeypatch.setenv("DEEPGEN_RESULTS", str(smoke_results.parent))
    cfg = start_stage("metrics", "smoke")
    for dataset, keys in [("mnist", {"domain_fid", "inception_fid", "is_domain"}), ("stacked_mnist", {"domain_fid"}),
                          ("celeba64", {"inception_fid", "precision"})]:
        report = Evaluator(cfg, dataset).report(load_images(dataset, "test", stacked_n=64).x[:32])
        assert keys <= set(report) and report["n_samples"] == 32, dataset
        assert 0 <= report["precision"] <= 1 and 0 <= report["recall"] <= 1


def test_a_face_folder_of_your_own_runs_the_face_path_at_smoke(smoke_results, tmp_path, monkeypatch):
    """Generated 64×64 face-like images in a folder of one's own: the metrics stage computes their reference, the face
    chapter trains and scores on them under their name, and a changed folder is caught before its stale reference is
    used."""
    import torch
    from deepgen.config import ConfigError, start_stage
    from deepgen.metrics import Evaluator
    from test_data import _blob_faces, _write_faces
    folder, results = tmp_path / "blob faces", tmp_path / "results"
    _write_faces(folder, _blob_faces(48))
    shutil.copytree(smoke_results, results / "smoke")
    for var, value in {"DEEPGEN_RESULTS": results, "DEEPGEN_FACES": folder, "DEEPGEN_FACES_NAME": "Blob faces",
                       "DEEPGEN_FACES_TEST": 0.25}.items():
        monkeypatch.setenv(var, str(value))
    for nb in ("05_metrics", "22_ddgan_images"):
        run_notebook(ROOT / "nbs" / f"{nb}.ipynb", "smoke", root=ROOT)
    ref = torch.load(results / "smoke" / "artifacts" / "metrics" / "inception_celeba64.pt", weights_only=False)
    assert ref["source"].startswith("Blob faces:") and ref["n"] == 16  # the smoke profile's inception_n
    table = (results / "smoke" / "tables" / "ddgan" / "ddgan_images" / "paper_vs_ours.md").read_text()
    assert "ours Blob faces 64²" in table and "CelebA-HQ" in table and "ours celeba64" not in table
    cfg = start_stage("metrics", "smoke")
    assert Evaluator(cfg, "celeba64").inception_ref["source"] == ref["source"]
    _write_faces(folder, _blob_faces(1, seed=7), start=48)  # one more face: the reference no longer matches
    with pytest.raises(ConfigError, match=r"not of today's celeba64 data: re-run the metrics stage") as err:
        Evaluator(cfg, "celeba64")
    assert "\n" not in str(err.value)


def test_trilemma_gathers_the_foundations_families(smoke_results):
    """The foundations trilemma covers exactly the five families of its chapter, each on every budget dataset, scored
    on the budget's sample count; its metrics file is a short nested summary of numbers; it does not draw the report's
    cross-family figure."""
    from deepgen.bench import TRILEMMA_COLUMNS, gather_trilemma, trilemma_budget
    from deepgen.config import slug
    params = read_params(ROOT)
    budget, expected = trilemma_budget("smoke"), params["trilemma"]["smoke"]["expected_stages"]
    assert set(expected) == {"vae", "flows", "ebm", "diffusion", "gan"} <= set(params["chapters"]["foundations"])
    found = gather_trilemma(smoke_results)
    rows = found[found["stage"].isin(expected)]
    assert set(rows["stage"]) == set(expected)
    assert set(TRILEMMA_COLUMNS + ["stage"]) <= set(rows.columns)  # plus the run_* columns write_table stamps
    for family, part in rows.groupby("family"):
        assert set(part["dataset"]) == set(budget.datasets), family
    assert (rows["n_samples"] <= budget.n_samples).all() and (rows["steps"] == budget.steps).all()
    assert (rows["timing_n"] == budget.timing_n).all()  # every sampler timed at one batch
    assert rows[["inception_fid", "domain_fid", "recall", "sample_s_per_100"]].notna().all().all()
    summary = json.loads((smoke_results / "metrics" / "trilemma.json").read_text())
    for _, r in rows.iterrows():
        values = summary[r["dataset"]][slug(r["model"])]
        assert values and all(isinstance(v, (int, float)) for v in values.values())
    assert set(summary["best_fid"]) == set(budget.datasets)
    figures = smoke_results / "figures" / "foundations" / "trilemma"
    assert (figures / "five_families.png").exists() and not (figures / "trilemma_scatter.png").exists()


def test_trilemma_entry_scores_a_sampler_and_round_trips(smoke_results, tmp_path, monkeypatch):
    "A sampler of uniform noise is scored with the budget's counts; the row survives write → gather."
    import torch
    from deepgen.bench import gather_trilemma, trilemma_budget, trilemma_entry, write_trilemma
    from deepgen.config import start_stage
    monkeypatch.setenv("DEEPGEN_RESULTS", str(smoke_results.parent))
    monkeypatch.setenv("DEEPGEN_OUT", str(tmp_path / "out"))
    cfg, budget = start_stage("vae", "smoke"), trilemma_budget("smoke")
    noise = lambda n: torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8)
    row = trilemma_entry(cfg, "noise", "none", "mnist", noise, nfe=1, params=0, train_s=0.0, budget=budget)
    assert row["n_samples"] == budget.n_samples and row["steps"] == budget.steps and row["sample_s_per_100"] > 0
    assert row["sample_s_min"] <= row["sample_s_per_100"] <= row["sample_s_max"] and row["timing_n"] == budget.timing_n
    assert row["recall"] == 0 and row["inception_fid"] > 100
    assert abs(row["recall_lo"]) < 1e-9 and 0 < row["recall_hi"] < 0.5  # a Wilson interval at 0 of n_ref_pr points
    write_trilemma([row], cfg)
    back = gather_trilemma(tmp_path / "out")
    assert back.loc[0, "model"] == "noise" and abs(back.loc[0, "inception_fid"] - row["inception_fid"]) < 1e-6


def test_trilemma_stage_depends_on_every_contributing_chapter():
    """dvc repro reruns the trilemma when a contributing chapter's rows or the reference rows change, each contributor
    reads the budget, and the foundations trilemma depends on no later chapter."""
    params, stages = read_params(ROOT), yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    deps = stages["trilemma"]["do"]["deps"]
    tables = [d for d in deps if "/tables/" in d]
    assert all(d.split("/tables/")[1].split("/")[0] in ("foundations", "metrics") for d in tables), tables
    for stage in params["trilemma"]["cpu"]["expected_stages"]:
        chapter = next(name for name, members in params["chapters"].items() if stage in members)
        assert f"results/${{key}}/tables/{chapter}/{stage}" in deps, stage
        assert "budget.${key}" in stages[stage]["do"]["params"], stage
        assert "lib/deepgen/bench.py" in stages[stage]["do"]["deps"], stage
