"""The tree keeps its shape: no import cycle anywhere in the project, imports flow one way between the
layers, every package folder is a package (a non-editable install drops folders without
`__init__.py`), and no flat job-prefixed module creeps back under jobs/."""

from __future__ import annotations

from pathlib import Path

from tests.import_graph import find_cycles, import_graph, layer_violations, plant_tree

ROOT = Path(__file__).resolve().parents[1]

# Imports flow jobs -> pipeline, connectors -> common; pipeline and connectors never meet.
# The `qbatch` package's own __init__ (public_api/) is the top: nothing below imports it.
LAYER_RULES = {
    "common": ("public_api", "jobs", "pipeline", "connectors", "tests"),
    "connectors": ("public_api", "jobs", "pipeline", "tests"),
    "pipeline": ("public_api", "jobs", "connectors", "tests"),
    "jobs": ("public_api", "tests"),
}


def test_the_project_has_no_import_cycle():
    assert find_cycles(import_graph(ROOT)) == []


def test_layers_import_only_downwards():
    assert layer_violations(import_graph(ROOT), LAYER_RULES) == []


def test_the_graph_sees_imports_inside_functions_and_modules_named_by_string():
    graph = import_graph(ROOT)
    assert "qbatch.jobs.index.command" in graph["qbatch.jobs.cli"]  # named by string in cli.COMMANDS
    assert "qbatch.jobs.index.job" in graph["qbatch.jobs.index.command"]  # imported inside run()


def test_a_planted_cycle_through_a_function_and_a_string_is_found(tmp_path):
    root = plant_tree(tmp_path, {
        "jobs/__init__.py": "",
        "jobs/a.py": "def f():\n    from qbatch.jobs.b import g\n    return g\n",
        "jobs/b.py": "import importlib\nMOD = 'qbatch.jobs.c'\ndef g():\n    return importlib.import_module(MOD)\n",
        "jobs/c.py": "from qbatch.jobs import a\n",
        "jobs/d.py": "from qbatch.jobs.a import f\n",  # imports into the cycle, is not part of it
    })
    assert find_cycles(import_graph(root, ("jobs",))) == [["qbatch.jobs.a", "qbatch.jobs.b", "qbatch.jobs.c"]]


def test_a_planted_layer_violation_is_found(tmp_path):
    root = plant_tree(tmp_path, {
        "connectors/__init__.py": "", "pipeline/__init__.py": "",
        "pipeline/stage.py": "X = 1\n",
        "connectors/store.py": "def f():\n    from qbatch.pipeline.stage import X\n    return X\n",
    })
    graph = import_graph(root, ("connectors", "pipeline"))
    assert layer_violations(graph, LAYER_RULES) == ["qbatch.connectors.store -> qbatch.pipeline.stage"]


def test_every_code_folder_is_a_package():
    folders = {p.parent for top in ("public_api", "jobs", "pipeline", "connectors", "common", "tests")
               for p in (ROOT / top).rglob("*.py")}
    missing = sorted(str(f.relative_to(ROOT)) for f in folders if not (f / "__init__.py").is_file())
    assert missing == []


def test_no_job_prefixed_module_sits_directly_under_jobs():
    flat = sorted(p.name for p in (ROOT / "jobs").glob("*.py") if p.name.startswith(("index_", "rerank_")))
    assert flat == []
