"""Executes the notebooks end to end at smoke size (DLF_NOTEBOOK_SMOKE=1)."""
import pathlib

import pytest

nbformat = pytest.importorskip("nbformat", reason="pip install -e '.[dev]' (nbformat)")
nbclient = pytest.importorskip("nbclient", reason="pip install -e '.[dev]' (nbclient)")

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["quickstart.ipynb", "learned_loss.ipynb", "noisy_labels.ipynb"])
def test_notebook_runs(monkeypatch, name):
  monkeypatch.setenv("DLF_NOTEBOOK_SMOKE", "1")
  monkeypatch.setenv("MPLBACKEND", "Agg")
  # Smoke-sized programs: XLA without most optimizations compiles them ~2x faster.
  monkeypatch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
  nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
  assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
      "commit the notebook with its outputs cleared")
  client = nbclient.NotebookClient(
      nb,
      timeout=600,
      kernel_name="python3",
      resources={"metadata": {
          "path": str(ROOT / "notebooks")
      }})
  client.execute()
  errors = [
      o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
      if o.get("output_type") == "error"
  ]
  assert not errors, errors
  images = [
      o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
      if "image/png" in o.get("data", {})
  ]
  assert images, "the notebook should display its plots"
