"""The monthly accounting's calculations are pure: they import neither the store nor anything
that touches the file system, so the same typed totals always give the same figures. Input
files have one reader module; of the accounting, only the runner talks to the store."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CALCULATIONS = ("accounting/scope3", "sitehours", "accounting/products", "accounting/reconcile")
"""The pure nodes: month figures, site-hours, product attribution, bill comparison."""
ACCOUNTING = sorted(p.stem for p in (ROOT / "processing" / "accounting").glob("*.py"))
RUNNER = "runner"
STORE = {"supplymeter.store", "supplymeter.influx", "processing.jobs"}
FILE_SYSTEM = {"csv", "io", "os", "pathlib", "shutil", "tempfile", "glob", "supplymeter.files",
               "processing.accounting.inputs", "processing.accounting.export",
               "processing.accounting.runner", "openpyxl", *STORE}  # fmt: skip


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


def test_only_the_runner_of_the_accounting_talks_to_the_store() -> None:
    assert RUNNER in ACCOUNTING and {"scope3", "footprints", "cbam", "export"} <= set(ACCOUNTING)
    for module in ACCOUNTING:
        touched = runtime_imports(f"accounting/{module}") & STORE
        if module == RUNNER:
            assert "supplymeter.store" in touched
        else:
            assert not touched, f"processing/accounting/{module}.py imports {sorted(touched)}"
    # Nothing outside the package computes a month but through the runner.
    for path in ROOT.glob("processing/*.py"):
        assert "compute_month(" not in path.read_text(), path


def test_input_files_have_one_reader() -> None:
    """Only the reader module reads CSV; ``check`` uses the same readers."""
    for module in ACCOUNTING:
        if module != "inputs":
            source = (ROOT / "processing" / "accounting" / f"{module}.py").read_text()
            assert "csv.DictReader" not in source, module
    check = (ROOT / "app" / "check.py").read_text()
    for reader in ("load_allocations", "load_bills", "load_certificates", "unknown_references"):
        assert f"    {reader},\n" in check.split("from processing.accounting.inputs import (")[1]
    assert "csv.DictReader" not in check
