"""The KQL the project ships, read from `kql/` at the app's root (deployed with the Functions app).

Each file is a complete query an operator can paste into the portal: no placeholders, no string
formatting. The time window is the query API's `timespan`.
"""

from __future__ import annotations

import re
from pathlib import Path

KQL_DIR = Path(__file__).resolve().parents[2] / "kql"
_NAME = re.compile(r"^[a-z0-9_]+$")


def kql_names() -> list[str]:
    """Every shipped query's name (its file name without `.kql`), sorted."""
    return sorted(path.stem for path in KQL_DIR.glob("*.kql"))


def load_kql(name: str) -> str:
    """The text of `kql/{name}.kql`; ValueError for a name that is not one of the shipped files."""
    if not _NAME.match(name):
        raise ValueError(f"not a query name (lower-case letters, digits, _): {name!r}")
    path = KQL_DIR / f"{name}.kql"
    if not path.is_file():
        raise ValueError(f"no query {name!r} in {KQL_DIR}; shipped: {', '.join(kql_names())}")
    return path.read_text(encoding="utf-8")
