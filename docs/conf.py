"""Sphinx configuration: builds offline (no intersphinx, notebooks not re-executed)."""

project = "scelm"
author = "scelm developers"
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_nb",
]
autosummary_generate = True
numpydoc_show_class_members = False
numpydoc_xref_param_type = False
nb_execution_mode = "off"  # the committed tutorial carries its outputs; CI re-executes it in the tests
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
html_theme = "alabaster"
html_static_path = ["_static"]
suppress_warnings = ["mystnb.unknown_mime_type"]
