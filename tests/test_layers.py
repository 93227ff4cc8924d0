"""The library's layers: core → families → papers → report; core never imports a family or a paper, a family never
imports a paper, and a paper never imports another paper."""
import re

from conftest import ROOT

CORE = {"config", "plots", "data", "nets", "train", "metrics", "bench", "claims"}
FAMILIES = {"vae", "flows", "ebm", "diffusion", "gan", "evaluation"}
IMPORT = re.compile(r"^\s*from\s+(?:\.|deepgen\.)(\w+)\s+import", re.MULTILINE)


def modules():
    "Every module of lib/deepgen (less the package files) → the deepgen modules it imports."
    return {p.stem: set(IMPORT.findall(p.read_text())) for p in (ROOT / "lib" / "deepgen").glob("*.py")
            if not p.stem.startswith("_")}


def layer(name):
    return "core" if name in CORE else "family" if name in FAMILIES else "report" if name == "report" else "paper"


def violations(graph):
    "(importer, imported) pairs that break the layering."
    allowed = {"core": {"core"}, "family": {"core", "family"}, "paper": {"core", "family"},
               "report": {"core", "family", "paper"}}
    return sorted((a, b) for a, deps in graph.items() for b in deps
                  if layer(b) not in allowed[layer(a)] or (layer(a) == layer(b) == "paper" and a != b))


def test_every_module_is_known_and_the_layers_hold():
    graph = modules()
    assert CORE | FAMILIES <= set(graph), f"missing modules: {sorted(CORE | FAMILIES - set(graph))}"
    assert violations(graph) == []


def test_the_check_catches_each_kind_of_violation():
    graph = {"data": {"config"}, "gan": {"data"}, "ddgan": {"gan"}, "ddn": {"data"}, "report": {"ddgan"}}
    assert violations(graph) == []
    assert violations({**graph, "data": {"vae"}}) == [("data", "vae")]
    assert violations({**graph, "nets": {"ddn"}}) == [("nets", "ddn")]
    assert violations({**graph, "gan": {"ddgan"}}) == [("gan", "ddgan")]
    assert violations({**graph, "ddn": {"ddgan"}}) == [("ddn", "ddgan")]
    assert violations({**graph, "train": {"report"}}) == [("train", "report")]
