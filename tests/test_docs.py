"""The documentation builds with warnings as errors, and its code examples pass as doctests."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).parents[1] / "docs"

pytest.importorskip("sphinx")
pytest.importorskip("myst_parser")


def sphinx_build(builder: str, source: Path, out: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q", "-b", builder, str(source), str(out)]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def test_docs_build_without_warnings(tmp_path):
    result = sphinx_build("html", DOCS, tmp_path / "html")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "html" / "modules" / "ppo.html").exists()


def test_docs_examples_pass_as_doctests(tmp_path):
    result = sphinx_build("doctest", DOCS, tmp_path / "doctest")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 failures in tests" in (tmp_path / "doctest" / "output.txt").read_text()


def test_a_broken_reference_or_a_failing_example_fails_the_build_naming_file_and_line(tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs, ignore=shutil.ignore_patterns("*-runs", "*.gif"))
    page = docs / "guide" / "install.md"
    line = len(page.read_text().splitlines()) + 2
    page.write_text(page.read_text() + "\nSee [the missing page](missing.md).\n\n```{testcode}\nassert 1 == 2\n```\n")
    html = sphinx_build("html", docs, tmp_path / "html")
    assert html.returncode != 0
    assert f"install.md:{line}" in html.stderr and "missing.md" in html.stderr
    doctest = sphinx_build("doctest", docs, tmp_path / "doctest")
    assert doctest.returncode != 0
    assert "install.md" in doctest.stdout + doctest.stderr + (tmp_path / "doctest" / "output.txt").read_text()
