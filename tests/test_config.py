"Profiles, parameter checks, the notebook runner and its failure behaviour."
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT
from nbformat.v4 import new_code_cell, new_notebook

from deepgen.config import (METRICS_MAX, ConfigError, StageError, load_config, parse_overrides, run_notebook,
                            save_metrics, shown_path, stage_of, start_stage)


def test_profiles_share_keys_and_merge_with_stage_sections():
    for profile in ("smoke", "cpu", "full"):
        cfg = load_config("metrics", profile)
        assert cfg.profile == profile and cfg.stage == "metrics"
        assert {"seed", "device", "inception_n"} <= set(cfg)
    assert load_config("metrics", "cpu").inception_n > load_config("metrics", "smoke").inception_n


@pytest.mark.parametrize("profile, overrides, message", [
    ("nope", None, "unknown profile 'nope'"),
    ("smoke", {"stepz": 3}, "unknown parameter 'stepz'"),
    ("smoke", {"inception_n": 2.5}, "must be an int"),
    ("smoke", {"inception_n": -1}, "finite number >= 0"),
    ("smoke", {"bf16": 1}, "must be a bool"),
])
def test_bad_input_gives_one_line_error(profile, overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config("metrics", profile, overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_good_override_is_applied():
    assert load_config("metrics", "smoke", {"inception_n": 8}).inception_n == 8


def test_overrides_parse_as_yaml():
    assert parse_overrides(["a=1", "b=1e-3", "c=true", "d=cpu"]) == {"a": 1, "b": 1e-3, "c": True, "d": "cpu"}
    with pytest.raises(ConfigError):
        parse_overrides(["novalue"])


def test_cli_rejects_unknown_profile_in_one_line(results):
    out = subprocess.run([sys.executable, "-c", "from deepgen.config import run_main; run_main()",
                          "nbs/00_config.ipynb", "--profile", "huge"], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "unknown profile 'huge'" in out.stderr
    assert not results.exists()


def _write_stage_notebook(root, name, body):
    (root / "nbs").mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(f"profiles:\n  smoke: {{seed: 0, device: cpu}}\n{name}:\n  smoke: {{}}\n")
    nb = new_notebook(cells=[
        new_code_cell('profile = "smoke"\noverrides = {}', metadata={"tags": ["parameters"]}),
        new_code_cell(f"from deepgen.config import start_stage, save_metrics\ncfg = start_stage({name!r}, profile, overrides)\n"
                      "(cfg.fig_dir / 'partial.png').write_bytes(b'x')\n" + body)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = root / "nbs" / f"09_{name}.ipynb"
    nbformat.write(nb, path)
    return path


def test_failed_notebook_leaves_no_partial_outputs(tmp_path, monkeypatch):
    monkeypatch.delenv("DEEPGEN_RESULTS", raising=False)
    nb = _write_stage_notebook(tmp_path, "boom", "raise ValueError('the model diverged')")
    with pytest.raises(StageError) as err:
        run_notebook(nb, "smoke", root=tmp_path)
    assert "boom@smoke failed: ValueError: the model diverged" in str(err.value)
    assert "\n" not in str(err.value)
    results = tmp_path / "results" / "smoke"
    assert not (results / "figures" / "boom").exists() and not list(results.glob(".staging-*"))
    assert (tmp_path / "results" / ".failed" / "smoke-09_boom.ipynb").exists()


def test_successful_notebook_publishes_outputs(tmp_path, monkeypatch):
    monkeypatch.delenv("DEEPGEN_RESULTS", raising=False)
    nb = _write_stage_notebook(tmp_path, "boom", "save_metrics(cfg, {'ok': 1})")
    run_notebook(nb, "smoke", root=tmp_path)
    results = tmp_path / "results" / "smoke"
    assert (results / "figures" / "boom" / "partial.png").exists()
    metrics = json.loads((results / "metrics" / "boom.json").read_text())
    assert metrics["ok"] == 1 and metrics["run"]["profile"] == "smoke" and "git" in metrics["run"]
    assert stage_of(nb) == "boom"


def test_shown_path_is_relative_to_the_root_or_the_results(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPGEN_RESULTS", str(tmp_path / "res"))
    assert shown_path(tmp_path / "proj" / "results" / "cpu" / "a.pt", root=tmp_path / "proj") == "results/cpu/a.pt"
    assert shown_path(tmp_path / "res" / "smoke" / "a.pt", root=tmp_path / "proj") == "$DEEPGEN_RESULTS/smoke/a.pt"
    assert shown_path("/opt/elsewhere/lib/x.py", root=tmp_path / "proj") == "…/x.py"


@pytest.mark.parametrize("metrics, message", [
    ({"cifar10_DDGAN (T=4)_fid": 1.0}, "must be a slug"),
    ({"run": {"seed": 0}}, "other than 'run'"),
    ({"fid_by_t": [1.0, 2.0]}, "fid_by_t is a list"),
    ({"toy": {"source": "mirror"}}, "toy.source is a str"),
    ({f"m{i}": float(i) for i in range(METRICS_MAX + 1)}, "more than"),
])
def test_metrics_must_be_a_short_nested_summary(results, metrics, message):
    cfg = start_stage("config", "smoke")
    with pytest.raises(ConfigError, match=message) as err:
        save_metrics(cfg, metrics)
    assert "\n" not in str(err.value) and not cfg.metrics_file.exists()


def test_metrics_file_is_nested_with_run_info(results):
    cfg = start_stage("config", "smoke")
    save_metrics(cfg, {"cifar10": {"ddgan_t4": {"fid": 12.5, "kid": float("nan")}}, "ok": True})
    saved = json.loads(cfg.metrics_file.read_text())
    assert saved["cifar10"] == {"ddgan_t4": {"fid": 12.5, "kid": None}} and saved["run"]["stage"] == "config"


def test_executed_notebook_names_no_absolute_path(tmp_path, monkeypatch):
    monkeypatch.delenv("DEEPGEN_RESULTS", raising=False)
    body = ("import warnings\nfrom deepgen.nets import mlp\nfrom deepgen.train import TrainConfig, train\n"
            "import torch\nx = torch.randn(64, 2)\ntc = TrainConfig(steps=2, batch=8, ema=0, log_every=1, desc='tiny')\n"
            "for _ in range(2):\n    train(mlp(2, 2, 8, 1), lambda m, b: m(b).square().mean(), x, tc, ckpt_path=cfg.ckpt_dir / 'a.pt')\n"
            "warnings.warn('an old API', FutureWarning)\nsave_metrics(cfg, {'ok': 1})")
    nb = _write_stage_notebook(tmp_path, "paths", body)
    text = run_notebook(nb, "smoke", root=tmp_path).read_text()
    assert "tiny: resumed from step 2 of 2 (results/smoke/checkpoints/paths/a.pt)" in text
    assert "FutureWarning: an old API" in text and "IProgress not found" not in text
    assert str(tmp_path) not in text and "ipykernel_" not in text
    assert json.loads(text)["metadata"]["papermill"]["input_path"] == "nbs/09_paths.ipynb"


def test_a_failed_stage_under_dvc_repro_keeps_its_previous_outputs(tmp_path):
    "DVC deletes a stage's outputs before its command unless they persist; ours do, and deepgen-run publishes on success only."
    for item in ("params.yaml", "dvc.yaml", "nbs/00_config.ipynb", "lib/deepgen/config.py"):
        (tmp_path / item).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / item, tmp_path / item)
    dvc = str(Path(sys.executable).with_name("dvc"))
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([dvc, "init", "-q"], cwd=tmp_path, check=True)
    previous = {tmp_path / "results/smoke/metrics/config.json": '{"earlier": 1}\n',
                tmp_path / "results/smoke/notebooks/00_config.ipynb": "{}\n"}
    for path, text in previous.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    params = tmp_path / "params.yaml"
    params.write_text(params.read_text().replace("smoke: {seed: 0,", "smoke: {seed: notanint,", 1))
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    run = subprocess.run([dvc, "repro", "-s", "config@smoke"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert run.returncode != 0 and "profiles.smoke.seed='notanint' must be an int" in run.stdout + run.stderr
    assert {path: path.read_text() for path in previous} == previous


def test_overrides_are_recorded_and_mark_outputs_non_canonical(results, tmp_path, monkeypatch):
    "A `--set` run says so in every table (CSV columns, Markdown footer) and metrics file it writes."
    import pandas as pd
    from deepgen.plots import write_table
    monkeypatch.setenv("DEEPGEN_OUT", str(tmp_path / "out"))
    for overrides, canonical in [({}, True), ({"seed": 3}, False)]:
        cfg = start_stage("plots", "smoke", overrides)
        write_table(pd.DataFrame({"a": [1]}), cfg, "t")
        row = pd.read_csv(cfg.table_dir / "t.csv", keep_default_na=False).iloc[0]
        assert bool(row["run_canonical"]) == canonical and row["run_overrides"] == ("" if canonical else "seed=3")
        assert ("non-canonical run: --set seed=3" in (cfg.table_dir / "t.md").read_text()) == (not canonical)
        save_metrics(cfg, {"x": 1})
        run = json.loads(cfg.metrics_file.read_text())["run"]
        assert run["canonical"] == canonical
