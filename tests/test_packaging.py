"""The project installs as one import package, `qbatch`: pyproject.toml lists every package of the tree
(a package missing from the list still works in an editable install and is silently absent from the
wheel), no tracked file names a bare `jobs.`/`pipeline.`/`connectors.`/`common.` module, and the public
API loads lazily. The non-editable install itself is checked by .ci/plain_install_smoke.sh."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.import_graph import IMPORT_NAMES
from tests.test_runtime_dependencies import pyproject

ROOT = Path(__file__).resolve().parents[1]
# A bare project module named in code or text (one of the four folder names, a dot and a name; an import
# of one). Paths with slashes and longer dotted names (`qbatch.` or `tests.` before it) are fine.
BARE_MODULE = re.compile(r"(?<![\w./\-])(jobs|pipeline|connectors|common)\.[A-Za-z_]"
                         r"|^\s*(?:from|import)\s+(jobs|pipeline|connectors|common)\b", re.MULTILINE)
TEXT_SUFFIXES = (".py", ".sh", ".md", ".toml", ".yaml", ".yml", ".cfg", ".txt", ".dockerignore", ".json")
TEXT_NAMES = ("Makefile", "Dockerfile", "qbatch-retry", "run")


def tree_packages() -> list[str]:
    """Every package folder of the tree, as its import name."""
    found = []
    for folder, name in IMPORT_NAMES.items():
        if folder == "tests":
            continue
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.append(".".join([name, *rel]))
    return sorted(found)


def tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    return [ROOT / n for n in names if n.endswith(TEXT_SUFFIXES) or Path(n).name in TEXT_NAMES]


def test_pyproject_lists_exactly_the_packages_of_the_tree():
    setuptools = pyproject()["tool"]["setuptools"]
    assert sorted(setuptools["packages"]) == tree_packages()
    assert setuptools["package-dir"] == {name: folder for folder, name in IMPORT_NAMES.items() if folder != "tests"}
    assert pyproject()["project"]["scripts"]["qbatch"] == "qbatch.jobs.cli:entrypoint"


def test_no_tracked_file_names_a_bare_project_module():
    hits = [f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0).strip()}"
            for path in tracked_text_files() for text in [path.read_text(encoding="utf-8", errors="replace")]
            for m in BARE_MODULE.finditer(text)]
    assert len(tracked_text_files()) > 100 and hits == []


def test_the_check_finds_a_planted_bare_module():
    bare = ("pipe" "line", "jo" "bs", "conn" "ectors")  # split, so this file passes its own scan
    planted = f"x = 1\nfrom {bare[0]} import Embedder\nimport {bare[1]}.cli\nrun('-m {bare[1]}.demo')\n`{bare[2]}.x`\n"
    assert len(BARE_MODULE.findall(planted)) == 4
    fine = "from qbatch.pipeline import Embedder\nsee jobs/cli.py and tests.jobs.rerank\nthat is common.\n"
    assert BARE_MODULE.findall(fine) == []


def test_the_public_api_loads_lazily_and_names_the_package():
    code = ("import sys, qbatch\n"
            "assert 'torch' not in sys.modules and 'ray' not in sys.modules, 'import qbatch imported torch or ray'\n"
            "from qbatch import Embedder, Reranker, IndexConfig, RerankConfig, QBatchError, run_index, run_rerank\n"
            "assert Embedder.__module__ == 'qbatch.pipeline.embedder' and Reranker.__module__ == 'qbatch.pipeline.reranker'\n"
            "print(sorted(qbatch.__all__))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Embedder" in out.stdout and "run_rerank" in out.stdout
