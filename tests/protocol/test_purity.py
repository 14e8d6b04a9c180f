"""The protocol is pure: no I/O, clock, randomness or floats anywhere under agora/protocol.

The scan reads the syntax tree, so docstrings and comments may speak of time and floats; only
code is checked. New modules (for example agora/protocol/consensus/) are picked up by the
recursive walk.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import agora.protocol

PROTOCOL_DIRECTORY = Path(agora.protocol.__file__).resolve().parent

FORBIDDEN_MODULES = frozenset(
    {
        "time",
        "datetime",
        "random",
        "os",
        "socket",
        "asyncio",
        "subprocess",
        "sqlite3",
        "threading",
        "aiohttp",
        "httpx",
        "requests",
    }
)


def find_impurities(source: str, filename: str = "<source>") -> list[str]:
    """Every forbidden import, float literal, ``float(`` call or ``random.`` use in ``source``."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FORBIDDEN_MODULES:
                    found.append(f"{where}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 0 and module.split(".")[0] in FORBIDDEN_MODULES:
                found.append(f"{where}: from {module} import ...")
        elif isinstance(node, ast.Constant) and isinstance(node.value, float | complex):
            found.append(f"{where}: float literal {node.value!r}")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "random":
                found.append(f"{where}: random.{node.attr}")
        elif isinstance(node, ast.Name) and node.id == "float":
            # Catches ``float(x)``, and also ``map(float, xs)`` or a ``float`` annotation.
            found.append(f"{where}: use of float")
    return found


def find_true_divisions(source: str, filename: str = "<source>") -> list[str]:
    """``a / b`` makes a float from integers; the protocol floors explicitly with ``//``."""
    return [
        f"{filename}:{node.lineno}: true division"
        for node in ast.walk(ast.parse(source, filename))
        if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div))
        or (isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Div))
    ]


def _protocol_sources() -> list[Path]:
    return sorted(PROTOCOL_DIRECTORY.rglob("*.py"))


def test_scan_covers_the_protocol_package() -> None:
    names = {path.name for path in _protocol_sources()}
    assert {"transition.py", "state.py", "codec.py", "accounts.py"} <= names


def test_protocol_has_no_io_clock_randomness_or_floats() -> None:
    problems = [
        problem
        for path in _protocol_sources()
        for problem in find_impurities(path.read_text(), str(path.relative_to(PROTOCOL_DIRECTORY)))
    ]
    assert problems == []


def test_protocol_has_no_true_division() -> None:
    problems = [
        problem
        for path in _protocol_sources()
        for problem in find_true_divisions(
            path.read_text(), str(path.relative_to(PROTOCOL_DIRECTORY))
        )
    ]
    assert problems == []


@pytest.mark.parametrize(
    "source",
    [
        "import time",
        "import os.path",
        "import numpy, socket",
        "from datetime import datetime",
        "from random import randrange",
        "import asyncio as aio",
        "from subprocess import run",
        "import sqlite3",
        "import threading",
        "import aiohttp",
        "from httpx import get",
        "import requests",
        "x = 1.5",
        "x = 1e9",
        "x = float(3)",
        "x = list(map(float, [1]))",
        "import numpy\nx = random.random()",
        "def f(x):\n    return x * 0.5",
    ],
)
def test_scanner_flags_impurities(source: str) -> None:
    assert find_impurities(source)


@pytest.mark.parametrize(
    "source",
    [
        '"""Uses time from the block, never time.time(); a float like 1.5 is banned."""',
        "# import time\nx = 1",
        "import hashlib\nfrom agora.protocol import state\nx = 10 // 3",
        "from . import timing",
        "timestamp = block.timestamp",
        "x = '1.5'",
    ],
)
def test_scanner_ignores_docstrings_comments_and_lookalikes(source: str) -> None:
    assert find_impurities(source) == []


def test_division_scanner() -> None:
    assert find_true_divisions("x = a / b")
    assert find_true_divisions("x /= 2")
    assert find_true_divisions("x = a // b\n# a / b") == []


def find_function_imports(source: str, filename: str = "<source>") -> list[str]:
    """Every ``import`` inside a function: the protocol's modules import each other one way,
    at the top, so that a cycle shows as an import error instead of hiding in a function."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    found.append(f"{filename}:{inner.lineno}: import inside {_name_of(node)}")
    return found


def _name_of(node: ast.AST) -> str:
    return node.name if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) else "lambda"


def test_protocol_has_no_function_level_imports() -> None:
    problems = [
        problem
        for path in _protocol_sources()
        for problem in find_function_imports(
            path.read_text(), str(path.relative_to(PROTOCOL_DIRECTORY))
        )
    ]
    assert problems == []


@pytest.mark.parametrize(
    "source",
    [
        "def f():\n    import os",
        "def f():\n    from agora.protocol import domains",
        "async def f():\n    from . import state",
        "class C:\n    def method(self):\n        import hashlib",
        "def outer():\n    def inner():\n        from agora.protocol.weights import get_commits",
    ],
)
def test_function_import_scanner_flags_imports_in_functions(source: str) -> None:
    assert find_function_imports(source)


def test_function_import_scanner_accepts_module_level_imports() -> None:
    source = "import hashlib\nfrom agora.protocol import state\n\ndef f():\n    return state\n"
    assert find_function_imports(source) == []
