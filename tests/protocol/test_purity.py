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
