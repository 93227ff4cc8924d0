import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def results(tmp_path, monkeypatch):
    "Send every result of a test to a temporary folder, never to the repository's results/."
    monkeypatch.setenv("DEEPGEN_RESULTS", str(tmp_path / "results"))
    monkeypatch.delenv("DEEPGEN_OUT", raising=False)
    return tmp_path / "results"


@pytest.fixture
def empty_data(tmp_path, monkeypatch):
    "An empty data folder and cache, as on a machine where nothing was fetched."
    monkeypatch.setenv("DEEPGEN_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("DEEPGEN_CACHE", str(tmp_path / "cache"))
    (tmp_path / "data").mkdir()
    return tmp_path / "data"
