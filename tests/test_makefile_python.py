"""`make test PYTHON=...` runs the suite on that interpreter: each Python minor version gets its own
virtual environment, so an existing 3.11 `.venv` is never reused for a 3.12 run, and none of them is
deployed or tracked."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pathspec
import pytest

ROOT = Path(__file__).resolve().parents[1]


def fake_python(directory: Path, version: str) -> Path:
    """An interpreter that answers the Makefile's version question with `version`."""
    path = directory / f"python{version}"
    path.write_text(f"#!/bin/sh\necho {version}\n")
    path.chmod(0o755)
    return path


def planned_test_command(python: Path) -> str:
    """The pytest line `make test` would run (`make -n` prints the recipes without running them)."""
    make = shutil.which("make")
    assert make is not None
    plan = subprocess.run(
        [make, "--no-print-directory", "-n", "-C", str(ROOT), "test", f"PYTHON={python}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (line,) = (line for line in plan.splitlines() if " -m pytest" in line)
    return line


@pytest.mark.parametrize(("version", "venv"), [("3.11", ".venv"), ("3.12", ".venv/py3.12")])
def test_each_python_version_gets_its_own_environment(tmp_path: Path, version: str, venv: str) -> None:
    assert planned_test_command(fake_python(tmp_path, version)).startswith(f"{venv}/bin/python -m pytest")


def test_no_python_environment_is_deployed_or_tracked() -> None:
    for name in (".funcignore", ".gitignore"):
        ignored = pathspec.GitIgnoreSpec.from_lines((ROOT / name).read_text().splitlines())
        assert ignored.match_file(".venv/py3.12/bin/python"), name
