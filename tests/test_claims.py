"The claims ledger (deepgen.claims): verdict rules, the claims.csv format, and a ledger for every committed stage."
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT
from deepgen.claims import (CLAIM_COLUMNS, VERDICTS, Ledger, check_claims, format_value, gather_claims, scoreboard,
                            verdict_of)
from deepgen.config import read_params, start_stage

# Stages whose committed results predate the ledger: each leaves this dict when its chapter issue re-runs it with claims.
FOUNDATIONS = "issue 15 (Foundations chapter: every outcome stated as a verdict)"
DDGAN = "issue 13 (DDGAN chapter: make its central claims visible at the cpu profile)"
DDN = "issue 14 (DDN chapter: make its central claims visible at the cpu profile)"
AWAITING_RERUN = {"vae": FOUNDATIONS, "flows": FOUNDATIONS, "ebm": FOUNDATIONS, "diffusion": FOUNDATIONS,
                  "gan": FOUNDATIONS, "evaluation": FOUNDATIONS, "trilemma": FOUNDATIONS,
                  "ddgan_images": DDGAN, "ddn": DDN, "ddn_images": DDN}
CORE_WITH_CLAIMS = ["metrics", "bench"]  # core stages that test claims (of the metrics' and the benchmark's papers)


def claims_table(verdicts, ours=None) -> pd.DataFrame:
    ours = ours or ["1" for _ in verdicts]
    return pd.DataFrame([[f"c{i}", "a statement", "paper §1", "a measure", "2", o, v, "a rule: holds"]
                         for i, (v, o) in enumerate(zip(verdicts, ours))], columns=CLAIM_COLUMNS)


def test_verdict_rules():
    "All pass: reproduced; some: partly; none: not reproduced; None: not run; no outcome at all is an error."
    assert verdict_of(True) == verdict_of([True, True, True]) == verdict_of(np.ones(3, bool)) == "reproduced"
    assert verdict_of([True, False, False]) == "partly"
    assert verdict_of(False) == verdict_of([False] * 3) == "not reproduced"
    assert verdict_of(None) == "not run at this profile"
    with pytest.raises(ValueError):
        verdict_of([])


def test_bad_claims_tables_are_rejected():
    "A verdict outside the four words, an empty `ours` for a claim that ran, or other columns: one-line ValueError."
    good = claims_table(list(VERDICTS), ours=["1", "1", "1", ""])
    assert check_claims(good) is good  # `not run at this profile` may leave ours empty
    with pytest.raises(ValueError, match="verdicts must be one of"):
        check_claims(claims_table(["reproduced", "mostly"]))
    with pytest.raises(ValueError, match=r"\['c1'\] have a verdict but no measured value"):
        check_claims(claims_table(["reproduced", "not reproduced"], ours=["0.5", "  "]))
    with pytest.raises(ValueError, match="columns must be"):
        check_claims(good.drop(columns="why"))


def test_ledger_writes_a_valid_table_that_the_report_gathers(results):
    "`Ledger.check` rewrites claims.csv/.md at once; `gather_claims` reads it back, but not the report's own list."
    cfg = start_stage("claims", "smoke")
    folder = results / "tables" / "foundations" / "vae"
    folder.mkdir(parents=True)
    ledger = Ledger(cfg, folder=folder)
    held = ledger.check("mean", statement="the mean is 0", source="paper §2", measure="|mean|, 3 seeds", paper=0,
                        ours=[0.01, 0.02, 0.2], passed=[True, True, False], rule="|mean| < 0.05 on every seed")
    ledger.not_run("big", statement="FID 3.1 at 50k samples", source="paper Table 1", measure="FID", paper=3.1,
                   why="needs the full profile")
    assert held.verdict == "partly" and held.why == "|mean| < 0.05 on every seed: partly (2 of 3 hold)"
    assert held.says(reproduced="yes", not_reproduced="no") == "no"  # partly falls back to the not-reproduced text
    assert held.ours == "0.01, 0.02, 0.2" and format_value(12345.6) == "12346"
    assert "the mean is 0" in (folder / "claims.md").read_text()
    (results / "tables" / "report").mkdir()
    gather_claims(results).to_csv(results / "tables" / "report" / "claims.csv", index=False)  # chapter, stage: not a ledger
    gathered = gather_claims(results)
    assert gathered[["chapter", "stage", "claim", "verdict"]].values.tolist() == [
        ["foundations", "vae", "mean", "partly"], ["foundations", "vae", "big", "not run at this profile"]]
    board = scoreboard(gathered).set_index("chapter")
    assert board.loc["all"].tolist() == [2, 0, 1, 0, 1]


def committed_profiles() -> list[str]:
    "Profiles with results in git (`results/<profile>/…`; smoke is ignored)."
    files = subprocess.run(["git", "ls-files", "results"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return sorted({Path(f).parts[1] for f in files.splitlines() if len(Path(f).parts) > 2})


def stages_with_claims() -> list[tuple[str, str]]:
    "(folder under tables/, stage) for every chapter stage of params.yaml and the core stages that test claims."
    chapters = read_params(ROOT)["chapters"]
    return [(f"{chapter}/{stage}", stage) for chapter, stages in chapters.items() for stage in stages] + [
        (stage, stage) for stage in CORE_WITH_CLAIMS]


def test_awaiting_rerun_names_only_stages_of_the_course():
    assert set(AWAITING_RERUN) <= {stage for _, stage in stages_with_claims()}


@pytest.mark.parametrize("profile", committed_profiles())
@pytest.mark.parametrize("folder,stage", stages_with_claims())
def test_every_committed_stage_has_a_valid_claims_table(profile, folder, stage):
    "A stage with committed results publishes its claims; a stage awaiting its re-run must not have any yet."
    path = ROOT / "results" / profile / "tables" / folder / "claims.csv"
    if stage in AWAITING_RERUN:
        assert not path.exists(), f"{stage} has claims at {profile}: remove it from AWAITING_RERUN ({AWAITING_RERUN[stage]})"
        return
    assert path.exists(), f"{stage}: no claims.csv at {profile} (results/{profile}/tables/{folder}/)"
    check_claims(pd.read_csv(path, dtype=str, keep_default_na=False), path)
