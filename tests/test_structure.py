"""The source stays readable in one sitting: short functions, no import cycles,
and the private modules of a subpackage used only from inside it.

Pure `ast`: nothing is imported or compiled. Each check lists every violation it
finds, with file and line; the last test runs the checks on a small made-up
package to show that each finds what it should.

Imports inside functions are lazy and may point anywhere (they cannot close a
cycle at import time); they still count for the private-module check. Those
within scorax today: `_cli.build_parser` and `_cli_demo.run_demo` import
`__version__` from the package itself, and `run_demo` also imports `_cli_plots`.
"""

import ast
import dataclasses
import itertools
import pathlib


SOURCE = pathlib.Path(__file__).parent.parent / "src" / "scorax"
MAX_BODY_LINES = 100


@dataclasses.dataclass(frozen=True)
class Import:
    """One import statement's target module, resolved to its dotted name."""

    importer: str
    target: str
    line: int
    module_level: bool


def module_names(root: pathlib.Path) -> dict[str, pathlib.Path]:
    """Every module of the package at `root` by dotted name (a package by its own
    name, for its `__init__.py`)."""
    names = {}
    for file in sorted(root.rglob("*.py")):
        parts = (root.name, *file.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = file
    return names


def _package_of(module: str, file: pathlib.Path) -> str:
    """The package a module belongs to: itself for an `__init__.py`."""
    return module if file.name == "__init__.py" else module.rpartition(".")[0]


def _module_level_nodes(tree: ast.Module) -> set[int]:
    """The ids of the nodes that run when the module is imported: everything
    outside function bodies (class bodies and `if`/`try` blocks included)."""
    found: set[int] = set()
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        found.add(id(node))
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            pending.extend(ast.iter_child_nodes(node))
    return found


def _targets(
    node: ast.Import | ast.ImportFrom, package: str, modules: dict[str, pathlib.Path]
) -> list[str]:
    """The modules an import statement in `package` names, each once; a
    `from package import name` names the submodule `package.name` if there is
    one, else `package`."""
    if isinstance(node, ast.Import):
        return list(dict.fromkeys(alias.name for alias in node.names))
    origin = node.module or ""
    if node.level:
        parts = package.split(".")
        base = parts[: len(parts) - node.level + 1]
        origin = ".".join([*base, *([node.module] if node.module else [])])
    names = [f"{origin}.{alias.name}" for alias in node.names]
    return list(dict.fromkeys(name if name in modules else origin for name in names))


def imports(root: pathlib.Path) -> list[Import]:
    """Every import of one module of the package at `root` by another."""
    modules = module_names(root)
    found = []
    for module, file in modules.items():
        tree = ast.parse(file.read_text(), str(file))
        top = _module_level_nodes(tree)
        package = _package_of(module, file)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _targets(node, package, modules):
                if target in modules:
                    found.append(Import(module, target, node.lineno, id(node) in top))
    return found


def long_functions(root: pathlib.Path) -> list[str]:
    """The functions and methods whose body, docstring excluded, is longer than
    `MAX_BODY_LINES` lines."""
    found = []
    for file in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            body = node.body[1:] if ast.get_docstring(node) is not None else node.body
            if not body:
                continue
            assert node.end_lineno is not None
            lines = node.end_lineno - body[0].lineno + 1
            if lines > MAX_BODY_LINES:
                where = file.relative_to(root.parent)
                found.append(
                    f"{where}:{node.lineno}: {node.name} has a body of {lines} lines"
                )
    return found


def import_cycles(root: pathlib.Path) -> list[str]:
    """One cycle through each strongly connected set of modules of the import
    graph (module-level imports only), as `a -> b -> a` with the lines of the
    imports.

    Importing `a.b.c` runs the packages `a` and `a.b` first, so an import also
    depends on the target's packages, except those that contain the importer:
    those are already being imported when it runs.
    """
    graph: dict[str, dict[str, int]] = {}
    for edge in imports(root):
        if not edge.module_level:
            continue
        parts = edge.target.split(".")
        for end in range(1, len(parts) + 1):
            target = ".".join(parts[:end])
            if edge.importer == target or edge.importer.startswith(target + "."):
                continue
            graph.setdefault(edge.importer, {}).setdefault(target, edge.line)
    cycles = []
    for component in _strongly_connected(graph):
        if len(component) > 1:
            cycle = _cycle_in(graph, component)
            steps = [f"{a} (line {graph[a][b]})" for a, b in itertools.pairwise(cycle)]
            cycles.append(" -> ".join([*steps, cycle[-1]]))
    return cycles


def _strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's strongly connected components of `graph`, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in graph.get(node, {}):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _cycle_in(graph: dict[str, dict[str, int]], component: list[str]) -> list[str]:
    """A shortest cycle through the first module of a strongly connected
    `component`, as a list of modules that starts and ends with it."""
    start = component[0]
    previous = {start: start}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in sorted(graph.get(node, {})):
                if successor == start:
                    cycle = [node]
                    while cycle[-1] != start:
                        cycle.append(previous[cycle[-1]])
                    return [*reversed(cycle), start]
                if successor in component and successor not in previous:
                    previous[successor] = node
                    following.append(successor)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # unreachable for a component


def private_imports(root: pathlib.Path) -> list[str]:
    """Imports, at any level, of a private module (`_name`) of a subpackage by a
    module outside that subpackage. The private modules at the top of the
    package are shared by all of it."""
    modules = module_names(root)
    found = []
    for edge in imports(root):
        package, _, name = edge.target.rpartition(".")
        is_private_module = name.startswith("_") and package != root.name
        if not is_private_module:
            continue
        if edge.importer == package or edge.importer.startswith(package + "."):
            continue
        where = modules[edge.importer].relative_to(root.parent)
        found.append(
            f"{where}:{edge.line}: {edge.importer} imports {edge.target}, private "
            f"to {package} (import from {package} itself)"
        )
    return found


def _report(violations: list[str]) -> str:
    return f"{len(violations)} found:\n" + "\n".join(violations)


def test_no_function_body_is_longer_than_100_lines():
    """Every function and method under src/scorax has a body (docstring excluded)
    of at most 100 lines: longer ones are split into named steps."""
    violations = long_functions(SOURCE)
    assert not violations, _report(violations)


def test_no_import_cycles():
    """The module-level imports between scorax's modules form no cycle."""
    violations = import_cycles(SOURCE)
    assert not violations, _report(violations)


def test_private_modules_of_a_subpackage_are_imported_only_from_inside_it():
    """`scorax._sampler._common` is the sampler package's own business: other
    modules import what it exports from `scorax._sampler`."""
    violations = private_imports(SOURCE)
    assert not violations, _report(violations)


def _write(root: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_checks_find_what_they_should(tmp_path):
    """On a made-up package: a long function, a cycle through a subpackage's
    `__init__`, and a private import (even a lazy one) are found; the allowed
    forms (a 100-line body, a lazy cycle, top-level private modules, a
    subpackage's own private modules) are not."""
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_BODY_LINES))
    root = _write(
        tmp_path / "pkg",
        {
            "__init__.py": "from ._a import a\nfrom . import _sub\n",
            # 100 lines of body after the docstring: allowed; 101: not.
            "_a.py": (
                'def a():\n    """Doc."""\n' + body + "\n\n"
                "def b():\n" + body + "\n    return x0\n\n"
                "def c():\n    from ._sub._y import y\n"
                "from ._sub import y\n"
            ),
            "_helpers.py": "",
            # A lazy import closes no cycle.
            "_p.py": "from . import _q\n",
            "_q.py": "def f():\n    from . import _p\n",
            "_sub/__init__.py": "from ._y import y\n",
            "_sub/_y.py": "from .. import _helpers\nfrom .._a import a\ny = 1\n",
        },
    )
    assert long_functions(root) == ["pkg/_a.py:104: b has a body of 101 lines"]
    assert import_cycles(root) == [
        "pkg._a (line 209) -> pkg._sub (line 1) -> pkg._sub._y (line 2) -> pkg._a"
    ]
    assert private_imports(root) == [
        "pkg/_a.py:208: pkg._a imports pkg._sub._y, private to pkg._sub (import "
        "from pkg._sub itself)"
    ]
