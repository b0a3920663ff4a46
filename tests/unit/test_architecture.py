"""The shape of the code, pinned: layering, no import cycles, short functions, a public surface.

These read the source with :mod:`ast` (no imports run), so they hold for imports written
inside functions too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import runtime

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("runtime", "api", "graphs")
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 500


def _modules() -> Iterator[tuple[str, Path]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join(parts), path


def _runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that runs: at any depth, except under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in _runtime_imports(child))
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _runtime_imports(node)


def _imports(path: Path, module: str) -> set[str]:
    """Every module of ours that importing ``module`` imports, counting function-level imports.

    Importing ``a.b.c`` first runs ``a/__init__`` and ``a/b/__init__``: those packages are
    imported too, unless the importing module is inside them already.
    """
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in _runtime_imports(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    own = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
    if path.name == "__init__.py":
        own.add(module)
    implied = set()
    for name in found:
        parts = name.split(".")
        implied.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return {name for name in (found | implied) - own if name.split(".")[0] in PACKAGES}


def _graph() -> dict[str, set[str]]:
    modules = dict(_modules())
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {m for m in _imports(path, name) if m in modules and m != name}
    return graph


class TestLayering:
    def test_runtime_never_imports_api_graphs_or_fastapi(self) -> None:
        """runtime/ is the engine: it imports neither the HTTP layer, nor FastAPI, nor graphs/."""
        offenders = []
        for name, path in _modules():
            if not name.startswith("runtime"):
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names = [node.module]
                for imported in names:
                    if imported.split(".")[0] in ("api", "graphs", "fastapi", "starlette"):
                        offenders.append(f"{name} imports {imported}")
        assert offenders == []

    def test_no_import_cycles(self) -> None:
        """Dependencies between our modules form no cycle, counting function-level imports
        and the package ``__init__`` every import runs first."""
        edges = _graph()
        state: dict[str, int] = {}
        cycles: list[list[str]] = []

        def visit(node: str, stack: list[str]) -> None:
            state[node] = 1
            stack.append(node)
            for nxt in sorted(edges.get(node, ())):
                if state.get(nxt) == 1:
                    cycles.append(stack[stack.index(nxt) :] + [nxt])
                elif nxt not in state:
                    visit(nxt, stack)
            stack.pop()
            state[node] = 2

        for node in sorted(edges):
            if node not in state:
                visit(node, [])
        assert cycles == []


class TestSize:
    def test_functions_are_short(self) -> None:
        """No function or method in runtime/, api/ or graphs/ is over 60 lines."""
        long = []
        for name, path in _modules():
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    assert node.end_lineno is not None
                    lines = node.end_lineno - node.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        long.append(f"{name}.{node.name}: {lines} lines")
        assert long == []

    def test_modules_are_small(self) -> None:
        """No module in runtime/, api/ or graphs/ is over 500 lines."""
        big = []
        for name, path in _modules():
            lines = len(path.read_text().splitlines())
            if lines > MAX_MODULE_LINES:
                big.append(f"{name}: {lines} lines")
        assert big == []


class TestPublicSurface:
    def test_runtime_all_is_pinned(self) -> None:
        """runtime's public surface is exactly this list; changing it is a decision."""
        assert sorted(runtime.__all__) == sorted(PUBLIC)

    def test_every_public_name_exists(self) -> None:
        """Every name in a package's __all__ is importable from it."""
        import importlib

        for name, _ in _modules():
            if name.endswith("__main__"):
                continue  # runs the program when imported
            module = importlib.import_module(name)
            for public in getattr(module, "__all__", ()):
                assert hasattr(module, public), f"{name}.__all__ names a missing {public}"


PUBLIC = [
    "DEFAULT_OWNER",
    "AgentTemplate",
    "AwaitingApproval",
    "Budgets",
    "Conflict",
    "InvalidInput",
    "LeaseLost",
    "ModelBadResponse",
    "ModelRateLimited",
    "ModelRejected",
    "ModelSpec",
    "ModelUnavailable",
    "DatabaseUnavailable",
    "NotFound",
    "NothingToResume",
    "PayloadTooLarge",
    "PermissionDenied",
    "Runtime",
    "Session",
    "SessionBusy",
    "SessionExpired",
    "SessionInactive",
    "SessiongraphError",
    "Settings",
    "TemplateSpec",
    "ToolRegistry",
    "ToolSpec",
    "TurnEvent",
    "TurnFailed",
    "TurnResult",
    "Unauthenticated",
    "get_settings",
]


class TestDocumentedTree:
    def test_every_package_is_in_architecture_md_and_the_readme(self) -> None:
        """ARCHITECTURE.md's tree and the README's pieces table name every runtime package."""
        architecture = (ROOT / "ARCHITECTURE.md").read_text()
        readme = (ROOT / "README.md").read_text()
        packages = sorted(
            p.name for p in (ROOT / "runtime").iterdir() if (p / "__init__.py").is_file()
        )
        assert packages, "runtime has sub-packages"
        for name in packages:
            assert f"  {name}/ " in architecture, f"ARCHITECTURE.md misses runtime/{name}/"
            assert f"`runtime/{name}/`" in readme, f"README.md misses runtime/{name}/"

    def test_functions_named_in_the_turn_path_exist(self) -> None:
        """Every `file.py:function` ARCHITECTURE.md names is defined in that file."""
        import re

        text = (ROOT / "ARCHITECTURE.md").read_text()
        for path, name in re.findall(r"`([\w/]+\.py):(\w+)`", text):
            source = (ROOT / path).read_text()
            assert re.search(rf"(def|class) {name}\b", source), f"{path} has no {name}"
