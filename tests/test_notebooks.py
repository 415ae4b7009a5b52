"""Static checks of the stored notebooks (their execution is checked by nbval, see tests/run.sh)."""

import ast
import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
WIDGET_USE = re.compile(r"\binteract(ive_output)?\s*\(|import ipywidgets|widgets\.\w+\(")
REQUIRED_PARAMETERS = {"profile", "run_dir", "seed", "device", "interactive"}


def test_series_exists():
    assert NOTEBOOKS and NOTEBOOKS[0].name.startswith("00_")
    numbers = [p.name[:2] for p in NOTEBOOKS]
    assert len(numbers) == len(set(numbers)), "two notebooks share a number"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_conventions(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), (
        "outputs not stripped"
    )
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell must be tagged 'parameters'"
    tree = ast.parse(tagged[0].source)
    names = set()
    for node in tree.body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, "parameters cell: only assignments"
        ast.literal_eval(node.value)  # literal values only
        names.add(node.targets[0].id)
    assert REQUIRED_PARAMETERS <= names, f"missing parameters: {REQUIRED_PARAMETERS - names}"
    for line in tagged[0].source.splitlines():
        assert "#" in line, f"parameter without a comment: {line!r}"
    assert nb.cells[0].cell_type == "markdown"
    for cell in code:
        if cell is not tagged[0] and WIDGET_USE.search(cell.source):
            assert "if interactive" in cell.source, "widgets must be gated behind `interactive`"
