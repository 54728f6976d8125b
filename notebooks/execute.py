"""Re-execute the tutorial from a fresh kernel and save it with its outputs.

    python notebooks/execute.py [--check]

``--check`` executes without saving (what the test suite does).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbclient
import nbformat

NOTEBOOK = Path(__file__).with_name("tutorial.ipynb")


def execute(save: bool) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=900, kernel_name="python3", coalesce_streams=True,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()  # raises CellExecutionError naming the failing cell
    if save:
        nbformat.write(nb, NOTEBOOK)


if __name__ == "__main__":
    execute(save="--check" not in sys.argv)
