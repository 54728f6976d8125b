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


def test_every_picture_is_made_by_a_script():
    """Each image the README and the guides show is written by a script of docs/_scripts
    (``python docs/_scripts/figures.py`` regenerates them), and no unused image is kept."""
    import re

    root = Path(__file__).parents[1]
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    shown = {name for page in pages for name in re.findall(r"_static/([\w.-]+\.png)", page.read_text())}
    scripts = "\n".join(p.read_text() for p in (root / "docs" / "_scripts").glob("*.py"))
    assert shown, "no image found in the pages"
    assert not [name for name in shown if name not in scripts], "images without a script"
    assert {p.name for p in (root / "docs" / "_static").glob("*.png")} == shown, "images no page shows"
