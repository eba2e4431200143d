"""The shape of the code, checked from the source (README "Layout", docs/design.md#composition):
which package may import which, one module that imports ``docker``, and modules small enough to read.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "rsgo"
# The composition root builds everything, so it may import everything.
COMPOSITION_ROOT = {"rsgo", "rsgo.runtime", "rsgo.cli"}
LAYERS = ("rsgo.web", "rsgo.security", "rsgo.observers", "rsgo.client")
MAX_MODULE_LINES = 400
MAX_TEST_FILE_LINES = 600


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imports(path: Path, known: set[str]) -> set[str]:
    """The rsgo modules a file imports (anywhere in it, functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in known else node.module)
    return {name for name in found if name == "rsgo" or name.startswith("rsgo.")}


def _group(module: str) -> str:
    """A layer package, the composition root, or "core" (the flat modules)."""
    if module in COMPOSITION_ROOT:
        return "root"
    return next((layer for layer in LAYERS if module == layer or module.startswith(layer + ".")), "core")


def _package_edges() -> dict[tuple[str, str], set[str]]:
    modules = _modules()
    edges: dict[tuple[str, str], set[str]] = {}
    for name, path in modules.items():
        for target in _imports(path, set(modules)):
            source_group, target_group = _group(name), _group(target)
            if source_group != target_group:
                edges.setdefault((source_group, target_group), set()).add(f"{name} -> {target}")
    return edges


def test_only_the_composition_root_imports_it():
    edges = _package_edges()
    into_root = {pair: found for pair, found in edges.items() if pair[1] == "root"}
    assert not into_root, into_root


def test_the_core_imports_neither_the_web_layer_nor_security():
    edges = _package_edges()
    outward = {pair: found for pair, found in edges.items()
               if pair[0] == "core" and pair[1] in ("rsgo.web", "rsgo.security")}
    assert not outward, outward


def test_the_packages_import_each_other_in_one_direction_only():
    edges = _package_edges()
    cycles = {(a, b): (edges[(a, b)], edges[(b, a)]) for (a, b) in edges
              if (b, a) in edges and a < b and "core" not in (a, b) and "root" not in (a, b)}
    assert not cycles, cycles
    # and the web layer sits on top of security, never the other way round
    assert ("rsgo.security", "rsgo.web") not in edges, edges.get(("rsgo.security", "rsgo.web"))


# What only the server needs: the client (rsgo.client) runs where scripts run and speaks HTTP to rsgo.
SERVER_LIBRARIES = {"flask", "werkzeug", "flask_sock", "htmx_flask", "peewee", "psycopg2", "pyodbc", "docker",
                    "paramiko", "gunicorn", "apscheduler", "argon2", "prometheus_client", "yaml"}


def test_the_client_imports_nothing_of_the_server():
    edges = _package_edges()
    outward = {pair: found for pair, found in edges.items() if pair[0] == "rsgo.client"}
    assert not outward, outward
    libraries = set()
    for name, path in _modules().items():
        if name == "rsgo.client" or name.startswith("rsgo.client."):
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                libraries.update(f"{name}: {n}" for n in names if n.split(".")[0] in SERVER_LIBRARIES)
    assert not libraries, libraries


def test_docker_is_imported_in_one_module():
    importers = set()
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "docker" or n.startswith("docker.") for n in names):
                importers.add(name)
    assert importers <= {f"rsgo.docker_ops.{m}" for m in ("errors", "containers", "gateway", "services")}, importers


def test_no_module_is_longer_than_it_can_be_read():
    long = {name: lines for name, path in _modules().items()
            if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_test_file_is_longer_than_it_can_be_read():
    long = {str(path.relative_to(ROOT)): lines for path in (ROOT / "tests").rglob("*.py")
            if (lines := len(path.read_text().splitlines())) > MAX_TEST_FILE_LINES}
    assert not long, f"test files over {MAX_TEST_FILE_LINES} lines: {long}"


def test_no_docstring_or_comment_cites_a_numbered_spec_outside_the_repository():
    cited = [str(path.relative_to(ROOT)) for path in [*PACKAGE.rglob("*.py"), ROOT / "README.md"]
             if "§" in path.read_text()]
    assert not cited, cited
