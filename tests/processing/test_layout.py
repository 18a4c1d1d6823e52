"""The monthly accounting's calculations are pure: they import neither the store nor anything
that touches the file system, so the same typed totals always give the same figures. Input
files have one reader module; the store is read by the runner."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CALCULATIONS = ("scope3", "sitehours", "products", "reconcile")
"""The pure nodes: month figures, site-hours, product attribution, bill comparison."""
READERS = "inputs"
RUNNER = "export"
FILE_SYSTEM = {"csv", "io", "os", "pathlib", "shutil", "tempfile", "glob", "supplymeter.files",
               "supplymeter.store", "supplymeter.influx", "processing.inputs",
               "processing.export", "processing.jobs", "openpyxl"}  # fmt: skip


def runtime_imports(module: str) -> set[str]:
    """Modules imported outside ``if TYPE_CHECKING:`` blocks (annotations only are fine)."""
    tree = ast.parse((ROOT / "processing" / f"{module}.py").read_text())
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def test_the_calculations_import_neither_the_store_nor_the_file_system() -> None:
    for module in CALCULATIONS:
        touched = runtime_imports(module) & FILE_SYSTEM
        assert not touched, f"processing/{module}.py imports {sorted(touched)}"
        source = (ROOT / "processing" / f"{module}.py").read_text()
        assert "open(" not in source, f"processing/{module}.py opens files"


def test_input_files_have_one_reader() -> None:
    """No calculation or runner module reads CSV itself; ``check`` uses the same readers."""
    for module in (*CALCULATIONS, RUNNER):
        assert "csv.DictReader" not in (ROOT / "processing" / f"{module}.py").read_text()
    check = (ROOT / "app" / "check.py").read_text()
    for reader in ("load_allocations", "load_bills", "load_certificates", "unknown_references"):
        assert f"    {reader},\n" in check.split("from processing.inputs import (")[1]
    assert "csv.DictReader" not in check
