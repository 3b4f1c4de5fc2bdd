"""Imports follow the data flow (raw -> prepared -> features -> model -> metrics -> report):
no package imports one further down the flow, function-level imports included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "vladapter"


def _imports(path: Path) -> set[str]:
    """Every vladapter module ``path`` imports, at any level of the file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vladapter"):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("vladapter"))
    return names


@pytest.mark.parametrize("package, forbidden", [
    ("data", ("vladapter.evaluate", "vladapter.train", "vladapter.metrics", "vladapter.report")),
    ("tasks", ("vladapter.evaluate", "vladapter.train", "vladapter.report")),
    ("features", ("vladapter.core", "vladapter.train", "vladapter.evaluate", "vladapter.report")),
    ("models", ("vladapter.core", "vladapter.train", "vladapter.evaluate", "vladapter.report")),
    ("petl", ("vladapter.core", "vladapter.train", "vladapter.evaluate", "vladapter.report")),
    # what train, pretrain and evaluate share (config, inputs, the model) is vladapter.core
    ("core", ("vladapter.evaluate", "vladapter.train", "vladapter.report", "vladapter.experiments")),
    ("evaluate", ("vladapter.train", "vladapter.report")),
    ("train", ("vladapter.evaluate", "vladapter.report")),
    ("metrics.py", ("vladapter.evaluate", "vladapter.train", "vladapter.tasks", "vladapter.models",
                    "vladapter.petl", "vladapter.features", "vladapter.report")),
])
def test_no_import_against_the_data_flow(package, forbidden):
    files = [SRC / package] if package.endswith(".py") else sorted((SRC / package).rglob("*.py"))
    wrong = {f"{f.relative_to(SRC)} -> {m}" for f in files for m in _imports(f) if m.startswith(forbidden)}
    assert not wrong, sorted(wrong)


def test_metrics_is_a_leaf_but_for_the_answer_normalisation():
    assert _imports(SRC / "metrics.py") == {"vladapter.data.answers"}
    assert _imports(SRC / "data" / "answers.py") == set()
