"""The house rules that keep the package general: checked on the source, so a stray import fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import ROOT

PACKAGE = ROOT / "captioner"


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def modules_outside(*parts: str) -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] not in parts)


@pytest.mark.parametrize("path", modules_outside("synthetic"), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_general_code_imports_nothing_of_the_synthetic_world(path):
    assert not [m for m in imported_modules(path) if m.startswith("captioner.synthetic")]


@pytest.mark.parametrize("path", modules_outside("cli"), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_hydra_stays_at_the_edges(path):
    assert not [m for m in imported_modules(path) if m.split(".")[0] in ("hydra", "omegaconf")]


def test_the_synthetic_world_is_named_only_in_configs_and_docs():
    """Outside the synthetic package, the word appears only in docstrings, comments and config defaults."""
    for path in modules_outside("synthetic"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and ast.get_docstring(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                assert "synthetic" not in node.value.lower(), f"{path}:{node.lineno}: {node.value!r}"
            if isinstance(node, ast.Name | ast.Attribute):
                name = node.id if isinstance(node, ast.Name) else node.attr
                assert "synthetic" not in name.lower(), f"{path}:{node.lineno}: {name}"


def test_functions_fit_on_a_screen_and_the_training_loop_stays_a_loop():
    """No function in the package over 50 lines; ``Trainer`` (the loop, its objectives elsewhere) under 200."""
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            size = getattr(node, "end_lineno", 0) - getattr(node, "lineno", 0) + 1
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and size > 50:
                long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({size} lines)")
            if isinstance(node, ast.ClassDef) and node.name == "Trainer":
                assert size < 200, f"Trainer is {size} lines"
    assert not long, long
