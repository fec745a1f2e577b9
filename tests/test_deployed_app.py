"""What azd deploys is exactly the app: the checkout less `.funcignore`, and the app runs from that alone.

The deployed file set is what git sees in the checkout (tracked, or new and not git-ignored: a fresh
clone once committed) less what `.funcignore` excludes, read with git's pattern rules as the Functions
tooling reads it. A copy of exactly that set is then imported in a fresh interpreter whose path holds
the copy and the installed packages, but not the checkout.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pathspec
import pytest

ROOT = Path(__file__).resolve().parents[1]
APP = {"function_app.py", "host.json", "requirements.txt", "backupwarden", "functions", "kql"}
APP_MODULES = {"function_app", "backupwarden", "functions"}
DEV_ONLY = {"emulator", "bench", "tests", "devtools", "docs", "infra"}
FUNCTIONS = [
    "alert_webhook",
    "protect_vm",
    "protect_vm_poison",
    "reconcile",
    "remediate",
    "remediate_poison",
    "ship_outcomes",
    "sweep",
    "sweep_worker",
    "sweep_worker_poison",
    "vm_event_queued",
    "vm_event_queued_poison",
    "vm_written",
]
# Run in the deployed copy (argv: the checkout, the copy): the copy first on sys.path, the checkout (put
# there by the editable install's .pth) taken off it.
ONLY_THE_COPY = (
    "import os, sys\n"
    "checkout, deployed = (os.path.realpath(path) for path in sys.argv[1:3])\n"
    "sys.path[:] = [deployed] + [path for path in sys.path if os.path.realpath(path or '.') != checkout]\n"
)
INDEX_THE_APP = ONLY_THE_COPY + (
    "import json\n"
    "import function_app\n"
    "print(json.dumps({\n"
    "    'functions': sorted(f.get_function_name() for f in function_app.app.get_functions()),\n"
    "    'modules': {name: getattr(m, '__file__', None) for name, m in list(sys.modules.items())},\n"
    "}))\n"
)
RUN_THE_DEMO = ONLY_THE_COPY + (
    "import runpy\n"
    "sys.argv = ['backupwarden', 'demo']\n"
    "runpy.run_module('backupwarden', run_name='__main__', alter_sys=True)\n"
)


def deployed_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\0")
    funcignore = pathspec.GitIgnoreSpec.from_lines((ROOT / ".funcignore").read_text().splitlines())
    return sorted(
        path for path in listed if path and (ROOT / path).is_file() and not funcignore.match_file(path)
    )


@pytest.fixture(scope="module")
def deployed_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("deployed")
    for path in deployed_files():
        (copy / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, copy / path)
    return copy


def run_in(copy: Path, program: str) -> subprocess.CompletedProcess[str]:
    # -I: no PYTHON* variables, no user site-packages, no working directory on sys.path.
    return subprocess.run(
        [sys.executable, "-I", "-c", program, str(ROOT), str(copy)],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _is_within(file: str | None, folder: Path) -> bool:
    return file is not None and Path(file).resolve().is_relative_to(folder.resolve())


def test_the_deployment_is_the_app_and_nothing_dev_only() -> None:
    files = deployed_files()
    assert {path.split("/")[0] for path in files} == APP
    assert {"function_app.py", "host.json", "requirements.txt", "backupwarden/__init__.py"} <= set(files)
    assert any(path.startswith("kql/") and path.endswith(".kql") for path in files)
    assert not [path for path in files if path.split("/")[0] in DEV_ONLY]


def test_function_app_indexes_from_the_deployed_files_alone(deployed_copy: Path) -> None:
    result = run_in(deployed_copy, INDEX_THE_APP)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert loaded["functions"] == FUNCTIONS
    modules: dict[str, str | None] = loaded["modules"]
    app_modules = {name: file for name, file in modules.items() if name.split(".")[0] in APP_MODULES}
    assert {"function_app", "backupwarden.app", "functions.sweep"} <= set(app_modules)
    assert [name for name, file in app_modules.items() if not _is_within(file, deployed_copy)] == []
    assert [name for name in modules if name.split(".")[0] in DEV_ONLY] == []


def test_the_deployed_cli_says_the_demo_is_not_deployed(deployed_copy: Path) -> None:
    result = run_in(deployed_copy, RUN_THE_DEMO)
    assert result.returncode == 2, result.stderr
    assert "the demo is a development tool and is not deployed" in result.stderr
    assert "Traceback" not in result.stderr
