"""The project's import graph, read from source with `ast` (nothing is imported): every `import` and
`from ... import` anywhere in a module, inside functions too, and every string constant that names a
project module (`cli.COMMANDS`, `importlib.import_module("qbatch.jobs.index.command")`). Used by the layout
tests to find import cycles and imports that cross the layers the wrong way, and by the runtime
dependency test to find the third-party modules a command can import."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGES = ("public_api", "jobs", "pipeline", "connectors", "common", "tests")
# The dotted name each folder imports under: pyproject.toml maps the code folders below `qbatch`.
IMPORT_NAMES = {"public_api": "qbatch", "jobs": "qbatch.jobs", "pipeline": "qbatch.pipeline",
                "connectors": "qbatch.connectors", "common": "qbatch.common", "tests": "tests"}
TOP_LEVEL = frozenset(name.split(".")[0] for name in IMPORT_NAMES.values())  # {"qbatch", "tests"}


def layer_of(module: str) -> str:
    """The folder a dotted module name lives in: `qbatch.jobs.cli` -> `jobs`, `qbatch` -> `public_api`."""
    for folder, name in sorted(IMPORT_NAMES.items(), key=lambda kv: -len(kv[1])):
        if module == name or module.startswith(name + "."):
            return folder
    return module.split(".")[0]


def module_files(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Dotted module name (as imported: `qbatch.jobs.cli`) -> file, for every .py under the folders."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root / package).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([IMPORT_NAMES[package], *parts])] = path
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest project module that `name` (a module, or a module plus an attribute) starts with."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            # `qbatch.rerank` (a logger name) names no module; only `import qbatch` itself means the top.
            return candidate if candidate not in TOP_LEVEL or candidate == name else None
        parts.pop()
    return None


def _imported_names(module: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: climb from this module's package
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, base] if base else package)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from qbatch.jobs import cli`
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.count(".") \
                and node.value.split(".")[0] in TOP_LEVEL and " " not in node.value:
            names.add(node.value)  # a module named by string
    return names


def import_graph(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    """module -> the project modules it imports (itself excluded)."""
    modules = module_files(root, packages)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = {_resolve(n, modules) for n in _imported_names(module, path)}
        graph[module] = {t for t in targets if t and t != module}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:
        nonlocal counter
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def layer_violations(graph: dict[str, set[str]], rules: dict[str, tuple[str, ...]]) -> list[str]:
    """`importer -> imported` lines where a module of a layer in `rules` imports a forbidden layer."""
    out = []
    for module, targets in sorted(graph.items()):
        forbidden = rules.get(layer_of(module), ())
        out += [f"{module} -> {t}" for t in sorted(targets) if layer_of(t) in forbidden]
    return out


def reachable(graph: dict[str, set[str]], roots: list[str]) -> set[str]:
    """Every module that importing `roots` can execute: their imports, transitively, and the
    `__init__` of every package on the way (importing `a.b.c` runs `a` and `a.b` first)."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        module = todo.pop()
        if module in seen or module not in graph:
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += sorted(graph[module])
    return seen


# Only a handler that names a failed import marks it optional: `except Exception` around a parser
# is error wrapping, not a feature that degrades.
_IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError"}


def _guards_imports(handlers: list[ast.ExceptHandler]) -> bool:
    for handler in handlers:
        names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        if any(isinstance(n, ast.Name) and n.id in _IMPORT_ERRORS for n in names):
            return True
    return False


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _ThirdPartyImports(ast.NodeVisitor):
    """Top-level third-party names imported at run time, each with whether it is required (not guarded)."""

    def __init__(self, project: tuple[str, ...]):
        self.project = project
        self.found: dict[str, bool] = {}  # name -> required
        self._guarded = 0

    def _add(self, name: str) -> None:
        top = name.split(".")[0]
        if top in self.project or top in sys.stdlib_module_names:
            return
        self.found[top] = self.found.get(top, False) or not self._guarded

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if not node.level and node.module:
            self._add(node.module)

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):  # only for type checkers; never runs
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Try(self, node: ast.Try) -> None:
        guarded = _guards_imports(node.handlers)
        self._guarded += guarded
        for child in node.body:
            self.visit(child)
        self._guarded -= guarded
        for child in [*node.handlers, *node.orelse, *node.finalbody]:
            self.visit(child)

    visit_TryStar = visit_Try


def third_party_imports(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, dict[str, bool]]:
    """module -> {top-level third-party module it imports: required}. An import inside a `try:` with
    a handler naming ImportError or ModuleNotFoundError is optional (required = False); imports under
    `if TYPE_CHECKING:` are left out; the standard library and the project's packages never count."""
    out: dict[str, dict[str, bool]] = {}
    for module, path in module_files(root, packages).items():
        visitor = _ThirdPartyImports(tuple(TOP_LEVEL))
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        out[module] = visitor.found
    return out


def plant_tree(root: Path, files: dict[str, str]) -> Path:
    """Write `files` (relative path -> text) under `root`: a small planted project for the checks' own tests."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root
