"""``flows`` never imports ``scheduling`` (nor ``nodes`` either app): apps that build on ``flows``
plug into it through its registries (flow-file sections, section access, flow page inlines)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"flows": ("scheduling",), "nodes": ("flows", "scheduling")}


#: Calls that import the module named by their first argument.
DYNAMIC_IMPORTS = {"import_module", "import_string", "__import__"}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports, anywhere in it (functions, ``try`` blocks included), and
    every module named by a literal given to ``import_module``/``import_string``/``__import__``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and _called_name(node.func) in DYNAMIC_IMPORTS:
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.append((node.lineno, first.value))
    return found


def _called_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else None


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_never_imports_the_apps_built_on_it(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    offending = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in files
        for line, module in imported_modules(path)
        if module.split(".")[0] in FORBIDDEN[package]
    ]
    assert offending == []


def test_the_check_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    try:\n        from scheduling.admin import X\n"
                      "    except ImportError:\n        pass\n")  # fmt: skip
    assert imported_modules(module) == [(3, "scheduling.admin")]


def test_the_check_sees_a_module_imported_by_name(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import importlib\n"
                      "admin = importlib.import_module('scheduling.admin')\n"
                      "inline = import_string('scheduling.admin.FlowScheduleInline')\n")  # fmt: skip
    assert imported_modules(module)[1:] == [
        (2, "scheduling.admin"),
        (3, "scheduling.admin.FlowScheduleInline"),
    ]


def test_scheduling_puts_its_inline_on_the_flow_page_through_the_registry() -> None:
    from django.contrib import admin

    from flows.admin.access import FlowAccessInline
    from flows.models import Flow
    from scheduling.admin import FlowScheduleInline

    inlines = admin.site._registry[Flow].inlines
    assert inlines[2:] == [FlowScheduleInline, FlowAccessInline]
