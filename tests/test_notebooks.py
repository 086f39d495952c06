"""Every walkthrough in notebooks/ runs top to bottom (on small data)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("NOTEBOOK_SIZE", "6000")
    monkeypatch.setenv("NOTEBOOK_QUICK", "1")
    monkeypatch.chdir(path.parent.parent)  # notebooks find data_contracts/ from the repo root
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent.parent)}}).execute()
    errors = [o for cell in notebook.cells for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")


def test_there_is_a_walkthrough_per_app():
    from solutions_core.registry import list_solutions

    stems = {path.stem for path in NOTEBOOKS}
    assert {entry.name for entry in list_solutions()} <= stems
