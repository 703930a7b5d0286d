"""The service apart from its tools: its runtime modules import neither aiohttp (the `tools`
extra) nor the emulator, the local environment or the demo; and no module of the package is
part of an import cycle, not even through `TYPE_CHECKING` imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "consumer"

RUNTIME = (
    "consumer.app",
    "consumer.config",
    "consumer.options",
    "consumer.source",
    "consumer.transform",
    "consumer.health",
    "consumer.metrics",
    *(
        f"consumer.{sub}.{path.stem}"
        for sub in ("pipeline", "sink")
        for path in sorted((PACKAGE / sub).glob("*.py"))
        if path.stem != "__init__"
    ),
)
TOOLS = ("aiohttp", "consumer.emulator", "consumer.localenv", "consumer.demo")


def test_the_service_runtime_imports_no_tool() -> None:
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(RUNTIME)!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, timeout=60)
    loaded = orjson.loads(proc.stdout)
    assert "consumer.sink.transport" in loaded  # the list above really was imported
    assert [m for m in loaded if m.split(".")[0] == "aiohttp" or m.startswith(TOOLS[1:])] == []


def test_the_emulator_without_aiohttp_says_how_to_install_it() -> None:
    code = (
        "import sys\n"
        "sys.modules['aiohttp'] = None  # as if the tools extra were not installed\n"
        "from consumer.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    for command in ("emulator", "demo"):
        proc = subprocess.run(
            [sys.executable, "-c", code, command], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), lines
        assert "[tools]" in lines[0] and command in lines[0]


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules `path` imports (a `from package import name` of a submodule
    counts as that submodule)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found & modules


def test_no_import_cycles() -> None:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: _imports(path, set(paths)) - {name} for name, path in paths.items()}
    # A package's __init__ re-exporting its submodules is not a cycle: drop the edges from a
    # package to its own submodules.
    graph = {
        name: {dep for dep in deps if not dep.startswith(f"{name}.")}
        for name, deps in graph.items()
    }
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles: list[list[str]] = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                cycles.append([*path[path.index(dep) :], dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []
