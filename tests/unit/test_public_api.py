"""The public surface, httpx style: __all__ is sorted and is exactly the public names."""

from __future__ import annotations

import ast
import inspect
import types
from pathlib import Path

import pgqueue

INIT_SOURCE = Path(pgqueue.__file__).read_text(encoding="utf-8")


def _public_runtime_names() -> set[str]:
    return {
        name
        for name, value in vars(pgqueue).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType) and name != "annotations"
    }


def _public_names_in_init_source() -> set[str]:
    """Names bound at the top level of ``__init__.py`` (imports, defs, assignments)."""
    names: set[str] = set()
    for node in ast.parse(INIT_SOURCE).body:
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if not n.startswith("_")}


def test_all_is_sorted() -> None:
    assert pgqueue.__all__ == sorted(pgqueue.__all__)


def test_all_has_no_duplicates() -> None:
    assert len(set(pgqueue.__all__)) == len(pgqueue.__all__)


def test_all_is_exactly_the_public_names() -> None:
    assert set(pgqueue.__all__) == _public_runtime_names()


def test_all_is_exactly_the_public_names_bound_in_init_source() -> None:
    assert set(pgqueue.__all__) == _public_names_in_init_source()


def test_exported_classes_and_functions_report_module_pgqueue() -> None:
    exported = [getattr(pgqueue, name) for name in pgqueue.__all__]
    classes = [obj for obj in exported if inspect.isclass(obj)]
    assert classes, "expected classes in the public API"
    for obj in classes:
        assert obj.__module__ == "pgqueue", obj
    for obj in exported:
        if inspect.isfunction(obj):
            assert obj.__module__ == "pgqueue", obj


def test_version_is_a_string() -> None:
    assert isinstance(pgqueue.__version__, str)
    assert pgqueue.__version__
