"""The generation core stays framework-free: no module under ``generation/`` imports Django,
Celery or the Django app, at any indentation (imports inside functions count too)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

GENERATION = Path(__file__).resolve().parents[2] / "generation"
FORBIDDEN = ("django", "celery", "studyapp")
IMPORT_LINE = re.compile(r"^\s*(from|import)\s+(django|celery|studyapp)\b")


def _python_files():
    return sorted(GENERATION.rglob("*.py"))


def test_no_import_line_names_a_framework():
    """The issue's grep, extended to indented imports."""
    hits = [f"{p.relative_to(GENERATION.parent)}:{n}: {line.strip()}"
            for p in _python_files() for n, line in enumerate(p.read_text().splitlines(), 1) if IMPORT_LINE.match(line)]
    assert hits == []


def test_no_import_node_names_a_framework():
    """The same through the syntax tree: catches ``import os, django`` and multi-line forms."""
    hits = []
    for p in _python_files():
        for node in ast.walk(ast.parse(p.read_text(), filename=str(p))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            hits += [f"{p.name}:{node.lineno}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert hits == []


def test_the_checker_sees_a_forbidden_import(tmp_path):
    """The checks can fail: both recognise an indented import inside a function."""
    src = "def f():\n    from django.conf import settings\n    import celery\n"
    assert [line for line in src.splitlines() if IMPORT_LINE.match(line)] == ["    from django.conf import settings", "    import celery"]
    mods = [n.module if isinstance(n, ast.ImportFrom) else n.names[0].name for n in ast.walk(ast.parse(src))
            if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert mods == ["django.conf", "celery"]


def test_importing_the_whole_core_loads_no_framework():
    """Every module of the package imported in a fresh interpreter leaves django, celery and studyapp unloaded."""
    modules = [".".join(p.relative_to(GENERATION.parent).with_suffix("").parts) for p in _python_files()]
    modules = [m.removesuffix(".__init__") for m in modules if not m.endswith("__main__")]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(sorted(k for k in sys.modules if k.split('.')[0] in {FORBIDDEN!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=GENERATION.parent, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
