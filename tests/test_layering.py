"""The import contracts of pyproject.toml hold on the tree, and each breaks when a forbidden import is added.

`lint-imports` (import-linter, what `make lint` runs) checks them: the first test on this checkout, the
others on a copy of the root packages with one import line appended to one module.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _import_linter_config() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        config: dict[str, Any] = tomllib.load(file)["tool"]["importlinter"]
    return config


CONFIG = _import_linter_config()
CONTRACT_NAMES = {contract["id"]: contract["name"] for contract in CONFIG["contracts"]}


def lint_imports(cwd: Path, *contract_ids: str) -> subprocess.CompletedProcess[str]:
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    environment["COLUMNS"] = "300"  # one contract name a line
    selection = [argument for contract_id in contract_ids for argument in ("--contract", contract_id)]
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", *selection],
        cwd=cwd,  # lint-imports puts its working directory first on sys.path
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_contracts_hold_on_the_tree() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in CONTRACT_NAMES.values():
        assert f"{name} KEPT" in result.stdout


# (module file, the line appended to it, {contract id: the import the contract reports})
FORBIDDEN_IMPORTS: list[tuple[str, str, dict[str, str]]] = [
    (
        "backupwarden/domain/__init__.py",
        "import azure.core",
        {"domain": "backupwarden.domain -> azure.core", "azure-sdks": "backupwarden.domain -> azure.core"},
    ),
    (
        "backupwarden/domain/__init__.py",
        "import requests",
        {"domain": "backupwarden.domain -> requests"},
    ),
    (
        "backupwarden/domain/__init__.py",
        "from backupwarden.adapters.azure import clients",
        {
            "layers": "backupwarden.domain -> backupwarden.adapters.azure.clients",
            "domain": "backupwarden.domain -> backupwarden.adapters.azure.clients",
        },
    ),
    (
        "backupwarden/flows/__init__.py",
        "import backupwarden.cli.main",
        {"layers": "backupwarden.flows -> backupwarden.cli.main"},
    ),
    (
        "backupwarden/flows/__init__.py",
        "import azure.storage.queue",
        {"azure-sdks": "backupwarden.flows -> azure.storage"},
    ),
    (
        "backupwarden/flows/__init__.py",
        "import emulator",
        {"deployed": "backupwarden.flows -> emulator"},
    ),
    (
        "functions/__init__.py",
        "import azure.core.exceptions",  # the triggers may import azure.functions, no other Azure SDK
        {"azure-sdks": "functions -> azure.core"},
    ),
    (
        "functions/__init__.py",
        "from devtools import demo",
        {"deployed": "functions -> devtools.demo"},
    ),
]


def test_every_contract_is_shown_to_break() -> None:
    shown = {contract_id for _, _, broken in FORBIDDEN_IMPORTS for contract_id in broken}
    assert shown == set(CONTRACT_NAMES)


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    FORBIDDEN_IMPORTS,
    ids=[f"{module}: {line}" for module, line, _ in FORBIDDEN_IMPORTS],
)
def test_a_forbidden_import_breaks_its_contract(
    tmp_path: Path, module: str, line: str, broken: dict[str, str]
) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    for package in CONFIG["root_packages"]:
        if (ROOT / package).is_dir():  # not azure.functions, an installed SDK
            shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    with (tmp_path / module).open("a") as file:
        file.write(f"\n{line}\n")

    for contract_id, reported_import in broken.items():
        result = lint_imports(tmp_path, contract_id)
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"{CONTRACT_NAMES[contract_id]} BROKEN" in result.stdout
        assert reported_import in result.stdout, result.stdout
