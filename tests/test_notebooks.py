"""Every notebook runs top to bottom, as committed, against the loaded test database.

The kernel is a separate process started from this one's environment, so the loaded_db fixture's
DATABASE_URL / INCA_ADMIN_URL reach it; the working directory is notebooks/, as with
`pytest --nbmake notebooks/` or Jupyter.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from core import config
from tests.conftest import PROJECT, Database

NOTEBOOKS = sorted((PROJECT / "notebooks").glob("*.ipynb"))
# Notebooks use the public API only; SQL or a driver in a notebook means a missing core function.
_SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE)\b.*\b(FROM|INTO|SET)\b|sqlalchemy|psycopg|core\.db\b", re.S)


def test_the_notebooks_exist() -> None:
    assert [path.name for path in NOTEBOOKS] == ["01_compare_products.ipynb", "02_lock_and_data_quality.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_is_committed_without_outputs_or_sql(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: clear the outputs"
            assert not _SQL.search(cell.source), f"{path.name}: SQL in a cell:\n{cell.source}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_top_to_bottom(path: Path, loaded_db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in loaded_db.env().items():
        monkeypatch.setenv(name, value)
    # `core` is importable through `pip install -e .`; the path also covers a checkout without it.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(PROJECT), os.environ.get("PYTHONPATH")])))
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    except CellExecutionError as error:
        pytest.fail(f"{path.name} failed:\n{error}")
    errors = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
              if output.output_type == "error"]
    assert errors == []


# --- the embedded data folder notebooks share with the project ------------------------------------

def test_relative_data_dir_is_the_project_root_from_inside_the_project(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INCA_DATA_DIR", raising=False)
    monkeypatch.chdir(PROJECT / "notebooks")
    assert config.data_dir() == PROJECT / ".inca"
    monkeypatch.setenv("INCA_DATA_DIR", ".inca-other")
    assert config.data_dir() == PROJECT / ".inca-other"


def test_relative_data_dir_outside_the_project_is_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("INCA_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert config.data_dir() == tmp_path.resolve() / ".inca"
    monkeypatch.setenv("INCA_DATA_DIR", str(tmp_path / "elsewhere"))
    assert config.data_dir() == tmp_path.resolve() / "elsewhere"
