"""The shape of the code, kept so: no import circle (of modules or of packages), `mtl` imports
neither `search` nor `reports`, `reports` never imports `search`, `ray` in one module, modules
under 400 lines, and the domain facts asked of their one owner. Reads the source; runs nothing."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("mtl", "search", "reports")
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Every first-party module a file imports, anywhere in it (functions and TYPE_CHECKING included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


GRAPH = {module: _imports(path) - {module} for module, path in MODULES.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_module_imports_itself_back():
    # a package's __init__ importing its own submodules is not a circle through the package
    graph = {m: {d for d in deps if not m.startswith(f"{d}.")} for m, deps in GRAPH.items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_packages_depend_one_way_mtl_below_reports_below_search():
    edges = {(m.split(".")[0], d.split(".")[0]) for m, deps in GRAPH.items() for d in deps}
    edges = {(a, b) for a, b in edges if a != b}
    assert edges <= {("search", "mtl"), ("reports", "mtl"), ("search", "reports")}, sorted(edges)


def test_ray_is_imported_in_one_module():
    importers = {m for m, p in MODULES.items() if re.search(r"^\s*(import ray|from ray)", p.read_text(), re.M)}
    assert importers == {"search.tune"}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_short(module):
    lines = MODULES[module].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{MODULES[module]}: {lines} lines"


def test_private_apis_of_other_libraries_live_in_one_adapter():
    pattern = re.compile(r"\b(study|storage|trial|scheduler|bracket|torch\._C|dist)\._[a-z]")
    users = {m for m, p in MODULES.items() if pattern.search(p.read_text(encoding="utf-8"))}
    assert users <= {"search.internals"}, users


def test_no_module_names_a_strategy_or_a_task_to_branch_on_it():
    """Behaviour lives with its owner: nothing tests `weighting == "gradnorm"` or `task == "da"`."""
    names = "|".join(["fixed", "uncertainty", "dwa", "gradnorm", "pcgrad", "famo", "da", "hter", "word_tags",
                      "source_tags", "post_edit", "mlm"])
    branch = re.compile(rf"""(==|!=|\bin)\s*\(?["']({names})["']|["']({names})["']\s*(==|!=)""")
    hits = [f"{p.relative_to(REPO)}:{i}: {line.strip()}" for m, p in MODULES.items()
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
            if branch.search(line) and ".mode ==" not in line]  # post_edit's mode option is no task name
    assert not hits, "\n".join(hits)
