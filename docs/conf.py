"""Sphinx configuration of sb3_lecture_ppo's documentation (the layout of SB3's and sb3-contrib's docs)."""

import sb3_lecture_ppo

project = "sb3_lecture_ppo"
author = "sb3_lecture_ppo contributors"
copyright = "2026, sb3_lecture_ppo contributors"
version = release = sb3_lecture_ppo.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3
# generated tables of the experiments (each one's figure and numbers are on the experiments page) and their runs
exclude_patterns = ["_build", "experiments/*-*.md", "experiments/*-runs"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": False}

html_theme = "sphinx_rtd_theme"
html_title = f"sb3_lecture_ppo {version}"

# The code examples on the pages run as doctests (tiny budgets): `sphinx-build -b doctest docs OUT`
doctest_global_setup = """
import os
import tempfile

import torch

torch.set_num_threads(1)
os.chdir(tempfile.mkdtemp())  # the examples save models: not into the caller's folder
"""
