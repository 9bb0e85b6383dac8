"""Sphinx configuration of the sb3-pgnotes documentation site (``make docs``)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

project = "sb3-pgnotes"
author = "sb3-pgnotes developers"
release = (ROOT / "sb3_pgnotes" / "version.txt").read_text().strip()
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.viewcode",
    "sphinx.ext.mathjax",
    # Copies MathJax into the site and points Sphinx at it: formulas render without a network connection.
    "sphinx-mathjax-offline",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "benchmarks/*/results", "benchmarks/results"]
# The Markdown pages link to files outside the site (benchmark scripts, records); MyST turns those into plain links.
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]
# Generated tables that are included in larger pages start at a lower heading level; the benchmark pages are reached
# through the links of the benchmark index rather than a table of contents.
suppress_warnings = ["myst.xref_missing", "myst.header", "toc.not_included"]
# The sidebar lists pages and sections, not every documented class and function.
toc_object_entries = False

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}

html_theme = "sphinx_rtd_theme"
html_title = f"sb3-pgnotes {release}"
html_static_path: list[str] = []
