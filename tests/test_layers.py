"""Agora's layers: each package imports only the layers below its own, and no package cycles.

The order is the one ``agora/__init__.py`` maps. The scan reads every module's syntax tree, so
it sees imports at module level, inside functions and under ``TYPE_CHECKING`` alike, relative
imports, and ``importlib.import_module("agora....")`` with a literal name. Packages of the same
layer (miner, validator, gateway, ...) may not import each other either: what they share
belongs in a package below them. A package missing from ``LAYERS`` fails the test: place it
first. Packages that do not exist yet are in the table so the rule holds the day they land.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import agora

AGORA_DIRECTORY = Path(agora.__file__).resolve().parent

# Lowest first. A package may import its own modules and any package of a lower layer.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "process"),
    ("protocol",),
    ("wallet", "amounts", "lineage"),
    ("sequencer",),
    ("node",),
    ("client",),
    ("neuron",),
    ("tasks",),
    ("payments",),
    ("miner", "validator", "gateway", "agents", "web"),
    ("devnet", "simulate"),
    ("cli",),
    ("__main__",),
)

RANK = {package: rank for rank, layer in enumerate(LAYERS) for package in layer}


@dataclass(frozen=True, slots=True)
class Import:
    source: str  # the importing module's file, relative to the repository
    line: int
    importer: str  # the importing module, dotted
    imported: str  # the imported module, dotted (agora.* only)


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def package_of(module: str) -> str:
    """``agora.node.api`` -> ``node``; ``agora.errors`` -> ``errors``; ``agora`` -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def find_imports(path: Path, root: Path) -> list[Import]:
    """Every import of an ``agora`` module in the file, wherever it is written."""
    importer = module_name(path, root)
    is_package = path.name == "__init__.py"
    source = str(path.relative_to(root.parent))
    found: list[Import] = []

    def add(node: ast.AST, imported: str) -> None:
        if imported == "agora" or imported.startswith("agora."):
            found.append(Import(source, getattr(node, "lineno", 0), importer, imported))

    for node in ast.walk(ast.parse(path.read_text(), source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(node, alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = importer.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            if module == "agora":
                # ``from agora import node`` imports the package agora.node.
                for alias in node.names:
                    add(node, f"agora.{alias.name}")
            else:
                add(node, module)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            add(node, node.args[0].value)
    return found


def scan(directory: Path = AGORA_DIRECTORY) -> list[Import]:
    return [
        found for path in sorted(directory.rglob("*.py")) for found in find_imports(path, directory)
    ]


def list_packages(directory: Path = AGORA_DIRECTORY) -> set[str]:
    """Every package and top-level module of agora (``node``, ``devnet``, ...)."""
    return {
        path.stem if path.is_file() else path.name
        for path in directory.iterdir()
        if (path.is_file() and path.suffix == ".py" and path.name != "__init__.py")
        or (path.is_dir() and any(path.rglob("*.py")))
    }


def find_layer_violations(imports: list[Import]) -> list[str]:
    """One line per import of a package that is not in a lower layer than the importer's."""
    problems = []
    for found in imports:
        importer, imported = package_of(found.importer), package_of(found.imported)
        if imported in ("", importer) or importer == "":
            continue
        if RANK[imported] >= RANK[importer]:
            relation = "the same layer as" if RANK[imported] == RANK[importer] else "above"
            problems.append(
                f"{found.source}:{found.line}: {found.importer} imports {found.imported}, "
                f"but {imported} (layer {RANK[imported]}) is {relation} {importer} "
                f"(layer {RANK[importer]}); move the shared piece down a layer"
            )
    return problems


def find_cycles(imports: list[Import]) -> list[list[str]]:
    """Cycles in the package graph (packages that import each other, directly or not)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for found in imports:
        importer, imported = package_of(found.importer), package_of(found.imported)
        if importer and imported and importer != imported:
            graph[importer].add(imported)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    path: list[str] = []

    def visit(package: str) -> None:
        state[package] = 1
        path.append(package)
        for imported in sorted(graph[package]):
            if state.get(imported) == 1:
                cycles.append([*path[path.index(imported) :], imported])
            elif imported not in state:
                visit(imported)
        path.pop()
        state[package] = 2

    for package in sorted(graph):
        if package not in state:
            visit(package)
    return cycles


def test_every_package_has_a_layer() -> None:
    unplaced = sorted(list_packages() - RANK.keys())
    assert not unplaced, (
        f"agora/{unplaced[0]} has no layer: add it to LAYERS in tests/test_layers.py and to the "
        "map in agora/__init__.py"
    )


def test_no_import_breaks_the_layer_order() -> None:
    problems = find_layer_violations(scan())
    assert not problems, "imports against the layer order:\n" + "\n".join(problems)


def test_no_cycle_between_packages() -> None:
    cycles = find_cycles(scan())
    assert not cycles, "package cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_scan_sees_every_kind_of_import(tmp_path: Path) -> None:
    """A forbidden import is caught at module level, inside a function, and relative."""
    package = tmp_path / "agora"
    (package / "node").mkdir(parents=True)
    (package / "client").mkdir()
    (package / "node" / "runner.py").write_text(
        "import importlib\n"
        "from agora.client.client import NodeClient\n"
        "def follow():\n"
        "    from ..client import transactions\n"
        "    import agora.miner.payments\n"
        "    return importlib.import_module('agora.cli.main')\n"
    )
    (package / "client" / "client.py").write_text("from agora.node import wire\n")
    imports = scan(package)
    problems = find_layer_violations(imports)
    assert [p.split(": ")[0] for p in problems] == [
        "agora/node/runner.py:2",
        "agora/node/runner.py:4",
        "agora/node/runner.py:5",
        "agora/node/runner.py:6",
    ]
    assert "agora.client.client" in problems[0] and "move the shared piece down" in problems[0]
    assert find_cycles(imports) == [["client", "node", "client"]]


def test_the_root_map_names_every_layer() -> None:
    """``agora/__init__.py`` maps the layers: a line per package of the table, in its order."""
    doc = agora.__doc__ or ""
    positions = {}
    for package in RANK:
        if package == "__main__":
            continue
        match = re.search(rf"^\s*(\d+\.)?\s*``{re.escape(package)}(/|\.py)``", doc, re.MULTILINE)
        assert match, f"agora/__init__.py does not map {package}"
        positions[package] = match.start()
    ordered = sorted(positions, key=positions.__getitem__)
    assert [RANK[p] for p in ordered] == sorted(RANK[p] for p in ordered), (
        f"agora/__init__.py lists the layers out of order: {ordered}"
    )


def test_every_package_maps_its_files() -> None:
    """Each package's ``__init__`` docstring names each of its modules and subpackages."""
    missing = []
    for init in sorted(AGORA_DIRECTORY.rglob("__init__.py")):
        directory = init.parent
        if directory == AGORA_DIRECTORY:
            continue
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        if not doc:
            missing.append(f"{init.relative_to(AGORA_DIRECTORY.parent)} has no docstring")
            continue
        for entry in sorted(directory.iterdir()):
            if entry.name == "__init__.py" or entry.name.startswith(("_", ".")):
                continue
            if entry.is_file() and entry.suffix == ".py":
                names = (f"{entry.name}", f"``{entry.stem}``")
            elif entry.is_dir() and (entry / "__init__.py").exists():
                names = (f"{entry.name}/",)
            else:
                continue
            if not any(name in doc for name in names):
                where = init.relative_to(AGORA_DIRECTORY.parent)
                missing.append(f"{where} does not map {entry.name}")
    for directory in sorted(p for p in AGORA_DIRECTORY.rglob("*") if p.is_dir()):
        if any(directory.glob("*.py")) and not (directory / "__init__.py").exists():
            missing.append(f"{directory.relative_to(AGORA_DIRECTORY.parent)} has no __init__.py")
    assert not missing, "package maps out of date:\n" + "\n".join(missing)
