"""The shape of the library, read statically: layers by stage, no circles, short functions, commands that
exist (docs/development.md#layout).

Layers, from the top (the entry points' side) to the bottom. A module may import its own package and every
layer below it; never one above or beside it. Nothing imports `cli`.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "dogbreed"

LAYERS = [
    ("cli",),  # command lines: nothing imports them
    ("sagemaker", "serving"),  # launchers and servers
    ("tuning",),  # studies of many training runs
    ("training",),  # fit = build -> run -> finish
    ("tracking", "diagnostics"),  # records of runs, rules and reports
    ("modeldir",),  # the model folder: format, writer, reader, ONNX/INT8, archive
    ("model",),  # the network, the LightningModule, the checkpoint loader
    ("data",),  # data sets, preprocessing and the one image path
    ("config", "files", "hardware", "__init__"),  # schema, errors, overrides, secrets; plain helpers
]
LAYER_OF = {name: depth for depth, names in enumerate(LAYERS) for name in names}
MAX_FUNCTION_LINES = 60
MAX_TOP_LEVEL_MODULES = 6


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def top_unit(module: str) -> str:
    """dogbreed.training.fit -> training; dogbreed.files -> files; dogbreed -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == "dogbreed":
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "dogbreed")
    return found


def library_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def test_every_package_and_top_level_module_has_a_layer():
    units = {top_unit(m) for m in library_modules()} - {"conf"}  # conf/: package data (rule configs)
    assert units <= set(LAYER_OF), f"give these a layer in LAYERS: {sorted(units - set(LAYER_OF))}"


def test_no_import_climbs_to_a_higher_layer():
    wrong = []
    for module, path in library_modules().items():
        here = top_unit(module)
        for imported in imports_of(path):
            there = top_unit(imported)
            if there == here or there == "conf":
                continue
            if LAYER_OF[there] < LAYER_OF[here] or (
                LAYER_OF[there] == LAYER_OF[here] and there != "__init__"
            ):
                wrong.append(f"{module} imports {imported} ({there} is not below {here})")
    assert not wrong, "\n".join(wrong)


def test_the_module_graph_has_no_circle():
    modules = library_modules()
    graph = {m: {i for i in imports_of(p) if i in modules and i != m} for m, p in modules.items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                pytest.fail("import circle: " + " -> ".join([*trail[trail.index(nxt) :], nxt]))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])


def test_functions_are_short():
    long = []
    for module, path in library_modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{module}.{node.name}: {lines} lines")
    assert not long, "\n".join(long)


def test_top_level_is_packages_and_a_few_modules():
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(modules) <= MAX_TOP_LEVEL_MODULES, modules


def documented_modules() -> set[str]:
    texts = [
        ROOT / "README.md",
        *ROOT.glob("docs/*.md"),
        *ROOT.glob("conf/**/*.yaml"),
        *ROOT.glob("serve/*.py"),
    ]
    found = set()
    for path in texts:
        found.update(re.findall(r"python3? -m (dogbreed[\w.]*)", path.read_text()))
    return found


def test_every_documented_module_command_exists():
    assert documented_modules(), "the docs name at least python -m dogbreed.data"
    missing = [m for m in sorted(documented_modules()) if importlib.util.find_spec(m) is None]
    assert not missing, missing


def test_no_test_imports_benchmarks():
    wrong = [
        p.name
        for p in (ROOT / "tests").glob("*.py")
        if re.search(r"^\s*(from|import) benchmarks\b|sys\.path.*benchmarks", p.read_text(), re.M)
    ]
    assert not wrong, wrong
