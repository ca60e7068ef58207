"""Atomic file writes of the experiments: text, JSON and CSV.

Every writer creates the file's directory and writes a temporary file that it then
renames over ``path``, so a reader (or a resumed run) never sees half a file.
"""
from __future__ import annotations

import csv
import json
import os
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = ["write_text", "write_json", "write_csv"]


def _temporary(path: str) -> str:
  """Creates ``path``'s directory; returns the temporary name to write before renaming."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  return f"{path}.tmp{os.getpid()}"


def write_text(path: str, text: str) -> None:
  """Writes ``text`` atomically (temporary file + rename), creating directories."""
  tmp = _temporary(path)
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def write_json(path: str, obj: Any) -> None:
  """Writes ``obj`` as indented JSON, atomically (numpy scalars and arrays as numbers/lists).

  Raises:
    TypeError: ``obj`` holds a value JSON cannot represent (naming its type).
  """
  write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(x):
  if isinstance(x, np.generic):
    return x.item()
  if isinstance(x, np.ndarray):
    return x.tolist()
  raise TypeError(f"Object of type {type(x).__name__} is not JSON serializable")


def write_csv(path: str, header: Sequence[str], rows: Iterable[Sequence]) -> None:
  """Writes ``header`` and then ``rows`` as CSV, atomically."""
  tmp = _temporary(path)
  with open(tmp, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(header)
    w.writerows(rows)
  os.replace(tmp, path)
