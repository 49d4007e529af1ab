"""The layout's rules (docs/architecture.md), read from the code's own imports: they hold or this fails."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]
APPS = ("accounts", "chat", "config")
# No module of chat/ grows past about this many lines: a module that does is holding several concerns.
MODULE_LINES_MAX = 450


def project_modules() -> dict[str, Path]:
    """Every module of the apps but tests and migrations, by dotted name."""
    found = {}
    for app in APPS:
        for path in (BASE_DIR / app).rglob("*.py"):
            parts = path.relative_to(BASE_DIR).with_suffix("").parts
            if "tests" in parts or "migrations" in parts:
                continue
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports_of(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The project modules a module imports, at its top or inside a function, type-checking ones apart."""
    tree = ast.parse(path.read_text())
    type_checking = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_checking:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(path, name, modules) for name, path in modules.items()}


def cycle_from(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """A path of imports from `start` back to itself, if there is one."""
    stack, seen = [(start, [start])], set()
    while stack:
        node, path = stack.pop()
        for target in graph[node]:
            # A package importing its own modules (chat.services naming them) is not a way back up.
            if target.startswith(node + "."):
                continue
            if target == start:
                return [*path, target]
            if target not in seen:
                seen.add(target)
                stack.append((target, [*path, target]))
    return None


def test_no_module_imports_one_that_imports_it_back(graph):
    cycles = [cycle for name in graph if (cycle := cycle_from(graph, name))]
    assert cycles == []


def test_accounts_does_not_import_chat(graph):
    assert {
        name: sorted(targets)
        for name, targets in graph.items()
        if name.startswith("accounts") and any(target.startswith("chat") for target in targets)
    } == {}


def test_no_module_of_chat_holds_more_than_one_concern_of_lines():
    modules = project_modules()
    long = {
        name: lines
        for name, path in modules.items()
        if name.startswith("chat") and (lines := len(path.read_text().splitlines())) > MODULE_LINES_MAX
    }
    assert long == {}


def test_the_graph_reads_function_level_imports_too(graph):
    # config.server imports the consumers' shutdown functions inside a method: the graph must see it.
    assert "chat.consumers.base" in graph["config.server"]
