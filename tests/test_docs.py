"""The documentation builds offline with warnings as errors."""

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_sphinx_build_has_no_warnings(tmp_path):
    docs = Path(__file__).parents[1] / "docs"
    out = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(docs), str(tmp_path)],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    for page in ["index", "how_it_works", "tutorial", "api/generated/scelm.tl.rank_genes_elm"]:
        assert (tmp_path / f"{page}.html").exists(), page
