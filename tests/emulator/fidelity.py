"""Compare the emulator's answers with the example payloads of the public REST specifications.

The examples stay where they are (`../shared/reference/specs/`), never copied here; where that
folder is absent the fidelity tests skip with a clear message.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

SPECS_ROOT = Path(
    os.environ.get(
        "BACKUPWARDEN_SPECS_DIR",
        Path(__file__).resolve().parents[3] / "shared" / "reference" / "specs" / "specification",
    )
)


def load_example(relative_path: str) -> dict[str, Any]:
    """One example file under the specs root; skips the test when the specs are not on this machine."""
    path = SPECS_ROOT / relative_path
    if not SPECS_ROOT.is_dir():
        pytest.skip(f"REST spec examples not found at {SPECS_ROOT} (set BACKUPWARDEN_SPECS_DIR)")
    if not path.is_file():
        raise FileNotFoundError(f"spec example missing: {path}")
    return dict(json.loads(path.read_text(encoding="utf-8")))


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if value is None:
        return "null"
    return type(value).__name__


def shape_differences(
    expected: Any, actual: Any, where: str = "$", ignore: frozenset[str] = frozenset()
) -> list[str]:
    """Every place where `actual` lacks a key of `expected` or holds a value of another type.

    Lists are compared element-wise against the example's first element. Keys named in
    `ignore` (by their JSON path, e.g. "$.properties.extendedInfo") are not compared.
    """
    if where in ignore:
        return []
    if _kind(expected) != _kind(actual):
        return [f"{where}: expected {_kind(expected)}, got {_kind(actual)}"]
    problems: list[str] = []
    if isinstance(expected, dict):
        for key, value in expected.items():
            path = f"{where}.{key}"
            if path in ignore:
                continue
            if key not in actual:
                problems.append(f"{path}: missing")
                continue
            problems.extend(shape_differences(value, actual[key], path, ignore))
    elif isinstance(expected, list) and expected:
        if not actual:
            return [f"{where}: expected a non-empty list"]
        for index, item in enumerate(actual):
            problems.extend(shape_differences(expected[0], item, f"{where}[{index}]", ignore))
    return problems


def assert_same_shape(expected: Any, actual: Any, ignore: frozenset[str] = frozenset()) -> None:
    problems = shape_differences(expected, actual, ignore=ignore)
    assert not problems, "emulator answer differs from the spec example:\n" + "\n".join(problems)
