"""Cut the test data of tests/test_infra_types.py out of a git clone of Azure/bicep-types-az.

    .venv/bin/python -m tests.bicep_types.trim <path to the clone's git dir> [Type@version ...]

Keeps, for every `Type@version` infra/ declares (and any given on the command line):
- versions.json: every api version published for every resource type of the namespaces infra/ uses
  (read from each generated/**/<namespace>/<version>/types.json), so a test can tell "not published"
  from "not kept";
- index.json: Type@version -> {RelativePath, Index}, the shape of the repository's generated/index.json;
- <RelativePath>: that generated/ types.json reduced to the types reachable from the kept resource
  types, renumbered, descriptions dropped (nothing else is changed).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.test_infra_types import TYPES, infra_resources

RESOURCE_NAME = re.compile(rb'"\$type":\s*"ResourceType",\s*"name":\s*"([^"@]+)@([^"]+)"')


def git(git_dir: Path, *args: str) -> bytes:
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], capture_output=True, check=True).stdout


def refs(value: Any) -> list[int]:
    if isinstance(value, dict):
        if set(value) == {"$ref"}:
            return [int(value["$ref"].removeprefix("#/"))]
        return [i for v in value.values() for i in refs(v)]
    if isinstance(value, list):
        return [i for v in value for i in refs(v)]
    return []


def reachable(types: list[dict[str, Any]], start: int) -> set[int]:
    seen: set[int] = set()
    pending = [start]
    while pending:
        index = pending.pop()
        if index not in seen:
            seen.add(index)
            pending.extend(refs(types[index]))
    return seen


def renumbered(value: Any, numbers: dict[int, int]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$ref"}:
            return {"$ref": f"#/{numbers[int(value['$ref'].removeprefix('#/'))]}"}
        # a type's or property's description is text; a property *named* description maps to its spec
        return {
            k: renumbered(v, numbers)
            for k, v in value.items()
            if not (k == "description" and isinstance(v, str))
        }
    if isinstance(value, list):
        return [renumbered(v, numbers) for v in value]
    return value


def main(git_dir: Path, extra: list[str]) -> None:
    wanted = sorted({r.key for r in infra_resources()} | set(extra))
    namespaces = {key.split("/", 1)[0].lower() for key in wanted}
    files = [
        path
        for path in git(git_dir, "ls-tree", "-r", "--name-only", "HEAD", "generated").decode().splitlines()
        if path.endswith("/types.json") and path.split("/")[2] in namespaces
    ]
    versions: dict[str, set[str]] = {}
    spelling: dict[str, str] = {}
    where: dict[str, str] = {}  # lower-cased Type@version -> file
    for path in files:
        for type_name, version in RESOURCE_NAME.findall(git(git_dir, "show", f"HEAD:{path}")):
            # the same type is spelt with different casing across files (microsoft.insights/...)
            spelt = spelling.setdefault(type_name.decode().lower(), type_name.decode())
            versions.setdefault(spelt, set()).add(version.decode())
            where[f"{type_name.decode()}@{version.decode()}".lower()] = path
    index: dict[str, dict[str, Any]] = {}
    by_file: dict[str, list[str]] = {}
    for key in wanted:
        if key.lower() in where:
            by_file.setdefault(where[key.lower()], []).append(key)
        else:
            print(f"not published: {key}", file=sys.stderr)
    for path, keys in sorted(by_file.items()):
        types = json.loads(git(git_dir, "show", f"HEAD:{path}"))
        starts = {
            key: next(
                i
                for i, t in enumerate(types)
                if t["$type"] == "ResourceType" and t["name"].lower() == key.lower()
            )
            for key in keys
        }
        kept = sorted({i for start in starts.values() for i in reachable(types, start)})
        numbers = {old: new for new, old in enumerate(kept)}
        relative = path.removeprefix("generated/")
        target = TYPES / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps([renumbered(types[i], numbers) for i in kept], indent=1) + "\n")
        for start in starts.values():
            index[types[start]["name"]] = {"RelativePath": relative, "Index": numbers[start]}
    (TYPES / "index.json").write_text(json.dumps(dict(sorted(index.items())), indent=1) + "\n")
    (TYPES / "versions.json").write_text(
        json.dumps({name: sorted(v) for name, v in sorted(versions.items())}, indent=1) + "\n"
    )
    commit = git(git_dir, "rev-parse", "HEAD").decode().strip()
    print(f"kept {len(index)} resource types from {len(by_file)} files of {len(files)} at {commit}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
