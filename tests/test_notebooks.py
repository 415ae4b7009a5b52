"""Static checks of the stored notebooks (their execution is checked by nbval, see tests/run.sh).

Conventions (CONTRIBUTING.md): stripped outputs, kernel ``python3``, one literal ``parameters`` cell,
widgets only behind ``interactive``. Teaching structure: a run-time estimate and the code's location at
the top, a link back to the pipeline map of notebook 00, two or three "Try this" exercises with folded
answers at the end. And every ``nt2c`` name a notebook (or an exercise's code) uses must exist, so a
module moved inside the package breaks here, in seconds, rather than in the nbval run.
"""

import ast
import importlib
import re
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
WIDGET_USE = re.compile(r"\binteract(ive_output)?\s*\(|import ipywidgets|widgets\.\w+\(")
REQUIRED_PARAMETERS = {"profile", "run_dir", "seed", "device", "interactive"}
MAP_LINK = "00_start_here.ipynb#The-pipeline-at-a-glance"
PYTHON_FENCE = re.compile(r"```python\n(.*?)```", re.S)
CODE_PATH = re.compile(r"`(nt2c/[\w/]*\w(?:\.py)?/?|\w+\.py)`")


def _read(path):
    return nbformat.read(path, as_version=4)


def _parameters_cell(nb):
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell must be tagged 'parameters'"
    return tagged[0]


def _parameters(nb) -> dict:
    return {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in ast.parse(_parameters_cell(nb).source).body
    }


def test_series_exists():
    assert NOTEBOOKS and NOTEBOOKS[0].name.startswith("00_")
    numbers = [p.name[:2] for p in NOTEBOOKS]
    assert len(numbers) == len(set(numbers)), "two notebooks share a number"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_conventions(path):
    nb = _read(path)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), (
        "outputs not stripped"
    )
    params = _parameters_cell(nb)
    tree = ast.parse(params.source)
    names = set()
    for node in tree.body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, "parameters cell: only assignments"
        ast.literal_eval(node.value)  # literal values only
        names.add(node.targets[0].id)
    assert REQUIRED_PARAMETERS <= names, f"missing parameters: {REQUIRED_PARAMETERS - names}"
    for line in params.source.splitlines():
        assert "#" in line, f"parameter without a comment: {line!r}"
    assert nb.cells[0].cell_type == "markdown"
    for cell in code:
        if cell is not params and WIDGET_USE.search(cell.source):
            assert "if interactive" in cell.source, "widgets must be gated behind `interactive`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_notebooks_show_widgets(path):
    """A student opening a notebook sees the widgets; the batch paths (run.sh, the runner) inject False."""
    assert _parameters(_read(path))["interactive"] is True


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_teaching_structure(path):
    nb = _read(path)
    markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
    text = "\n".join(markdown)
    assert "⟨" not in text, "an unfilled placeholder is left in the text"
    intro = markdown[0]
    assert "**Run time**" in intro and "smoke" in intro and "quick" in intro, (
        "no run-time estimate at the top"
    )
    if not path.name.startswith("00_"):
        assert MAP_LINK in intro, "the top cell must link back to the pipeline map of notebook 00"
        assert "**Code:**" in intro, "the top cell must name the package code of its stage"
    try_index = [i for i, src in enumerate(markdown) if src.startswith("## Try this")]
    assert len(try_index) == 1, "one '## Try this' section"
    exercises = markdown[try_index[0] :]
    numbered = set(re.findall(r"^\*\*(\d)\. ", "\n".join(exercises), re.M))
    answers = [src for src in exercises if src.startswith("<details><summary><b>Answer</b>")]
    assert 2 <= len(numbered) <= 3, "two or three exercises"
    assert len(answers) == len(numbered), "one folded answer per exercise"
    assert "Predict" in text, "ask for a prediction before a figure"


def test_pipeline_map_anchor_exists():
    """The map's heading gives the anchor the other notebooks link to."""
    headings = [c.source.splitlines()[0] for c in _read(NOTEBOOKS[0]).cells if c.cell_type == "markdown"]
    assert "## " + MAP_LINK.split("#")[1].replace("-", " ") in headings


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_named_code_paths_exist(path):
    """``nt2c/...`` folders and the ``*.py`` files named after them are where the notebook says."""
    named = 0
    for cell in _read(path).cells:
        if cell.cell_type != "markdown":
            continue
        folder = None
        for token in CODE_PATH.findall(cell.source):
            if token.startswith("nt2c/"):
                target = REPO / token
                folder = target if token.endswith("/") else target.parent
            elif folder is not None:
                target = folder / token
            else:
                continue
            assert target.exists(), f"{path.name} names {target.relative_to(REPO)}, which does not exist"
            named += 1
    assert named, "the notebook names no module of the package"


def _snippets(nb):
    """Code of the code cells and of the ```python blocks of the markdown cells (the exercises)."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            yield cell.source
        else:
            yield from PYTHON_FENCE.findall(cell.source)


def _resolve(dotted: list[str]):
    obj = importlib.import_module("nt2c")
    for i, attr in enumerate(dotted):
        if not hasattr(obj, attr):
            importlib.import_module(".".join(["nt2c", *dotted[: i + 1]]))
        obj = getattr(obj, attr)
    return obj


def _attribute_chain(node):
    chain = []
    while isinstance(node, ast.Attribute):
        chain.append(node.attr)
        node = node.value
    return chain[::-1] if isinstance(node, ast.Name) and node.id == "nt2c" else None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_nt2c_names_exist(path):
    """Every ``from nt2c... import name`` and ``nt2c.a.b`` in the notebook (exercises included) resolves."""
    used = set()
    for source in _snippets(_read(path)):
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "nt2c":
                module = node.module.split(".")[1:]
                used.update(tuple(module + [alias.name]) for alias in node.names)
            elif isinstance(node, ast.Import):
                used.update(tuple(a.name.split(".")[1:]) for a in node.names if a.name.startswith("nt2c."))
            elif isinstance(node, ast.Attribute) and (chain := _attribute_chain(node)):
                used.add(tuple(chain))
    missing = []
    for dotted in sorted(used):
        try:
            _resolve(list(dotted))
        except (ImportError, AttributeError):
            missing.append(".".join(["nt2c", *dotted]))
    assert not missing, f"{path.name} uses names that do not exist: {missing}"


def test_batch_runner_turns_widgets_off(tmp_path, monkeypatch):
    """``nt2c notebooks run`` injects ``interactive=False`` (stored notebooks default to True)."""
    import papermill

    from nt2c.tutorial.runner import run_notebooks

    calls = []

    def fake_execute(source, target, *, parameters, **kwargs):
        calls.append(parameters)
        Path(target).write_text(Path(source).read_text())

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    results = run_notebooks(
        profile="smoke", out=tmp_path, only=["01"], notebooks_dir=NOTEBOOK_DIR, log=lambda m: None
    )
    assert [r.status for r in results] == ["passed"]
    assert calls[0]["interactive"] is False and calls[0]["profile"] == "smoke"


def test_run_sh_runs_each_notebook_alone():
    """tests/run.sh gives every notebook its own run folder and turns the widgets off."""
    script = (REPO / "tests" / "run.sh").read_text()
    assert '-p run_dir "$PWD/$build/run_${name:0:2}"' in script
    assert "-p interactive False" in script


def test_default_notebook_dir_is_the_series(monkeypatch):
    """Without NT2C_NOTEBOOK_DIR the runner finds the repository's notebooks/ (``nt2c notebooks list``)."""
    from nt2c.tutorial.runner import default_notebook_dir

    monkeypatch.delenv("NT2C_NOTEBOOK_DIR", raising=False)
    assert default_notebook_dir() == NOTEBOOK_DIR


def test_shared_data_dir_from_any_folder(tmp_path, monkeypatch):
    """The notebooks' real-data sections find ``../shared/data`` whatever the kernel's working folder."""
    from nt2c.tutorial.notebook import shared_data_dir

    expected = REPO.parent / "shared" / "data"
    if not expected.is_dir():
        pytest.skip("../shared/data is absent")
    monkeypatch.delenv("NT2C_SHARED_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    assert shared_data_dir() == expected
