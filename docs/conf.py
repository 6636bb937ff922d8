"""Sphinx configuration of the socialgradient documentation (``make docs``).

Built offline from .venv-docs (docs/requirements.lock) with warnings as errors. The package
is imported from ``src/`` (the Makefile puts it on PYTHONPATH); numbers and tables come from
the committed result files through ``_ext/sgdocs.py``; the notebooks are the committed
executions in ``notebooks/`` (``docs/execute_notebooks.py``), rendered without running.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent / "src"))

import socialgradient  # noqa: E402

project = "socialgradient"
author = "socialgradient contributors"
copyright = "socialgradient contributors, MIT licence"
release = version = socialgradient.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_nb",
    "sgdocs",
]

source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "requirements.*", "execute_notebooks.py", "README.md",
                    "**.ipynb_checkpoints"]
root_doc = "index"

# MyST / myst-nb: notebooks are rendered as committed (their outputs and figures), never run.
myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "off"
nb_merge_streams = True

# autodoc + numpydoc: the public facade only (socialgradient.api, socialgradient.spec).
autodoc_typehints = "none"
autodoc_member_order = "bysource"
autodoc_mock_imports = []
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

html_theme = "pydata_sphinx_theme"
html_title = f"socialgradient {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_static_path = []
html_last_updated_fmt = None
