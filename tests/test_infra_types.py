"""infra/ against real tools: the Bicep grammar (tree-sitter-bicep) and Azure's published Bicep types.

The type data under tests/bicep_types/ is cut from Azure/bicep-types-az, the index the Bicep compiler
itself validates templates with (tests/bicep_types/README.md: commit, paths, how it was cut). Every
`resource x 'Type@version'` must exist there, and every property a template sets must exist on that
type: through nested objects and arrays while the type says what they hold; where it does not (`any`,
a union, a discriminated object without a literal discriminator, a value computed by an expression) the
check stops there rather than guess.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import tree_sitter_bicep
from tree_sitter import Language, Node, Parser

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
TYPES = Path(__file__).resolve().parent / "bicep_types"
REGENERATE = "regenerate it: .venv/bin/python -m tests.bicep_types.trim <bicep-types-az git dir> (README.md)"

PARSER = Parser(Language(tree_sitter_bicep.language()))
# Keys Bicep itself adds to a resource body; they are not properties of the resource type.
# https://learn.microsoft.com/azure/azure-resource-manager/bicep/resource-declaration
LANGUAGE_KEYS = frozenset({"parent", "scope", "dependsOn"})
# ObjectPropertyFlags.ReadOnly of the type data (Bicep warns when a template sets such a property):
# https://github.com/Azure/bicep-types/blob/main/src/bicep-types/src/types.ts
READ_ONLY = 2


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def syntax_errors(source: bytes) -> list[str]:
    """Every ERROR and MISSING node the grammar produced, as line:column."""
    found: list[str] = []

    def walk(node: Node) -> None:
        if node.is_error or node.is_missing:
            kind = "MISSING" if node.is_missing else "ERROR"
            found.append(f"{node.start_point[0] + 1}:{node.start_point[1] + 1} {kind} {node.text!r:.60}")
        for child in node.children:
            walk(child)

    walk(PARSER.parse(source).root_node)
    return found


# --- resources and the keys they set ---------------------------------------------------------------
@dataclass(frozen=True)
class Resource:
    where: str  # file:line
    type_name: str  # fully qualified, e.g. Microsoft.Storage/storageAccounts/blobServices
    api_version: str
    body: Node | None  # the object literal, None when the body is not a literal

    @property
    def key(self) -> str:
        return f"{self.type_name}@{self.api_version}"


def text(node: Node) -> str:
    return (node.text or b"").decode()


def string_literal(node: Node) -> str | None:
    """The text of a string without interpolation, else None."""
    if node.type != "string" or any(c.type == "interpolation" for c in node.children):
        return None
    return "".join(text(c) for c in node.children if c.type == "string_content")


def value_of(node: Node) -> Node:
    """The object a resource or loop body ends in: through `if (...)` and `[for ...: ...]`."""
    if node.type == "if_statement":
        return value_of(node.children[-1])
    if node.type == "for_statement":
        return value_of(node.children[-2])  # the body before the closing bracket
    return node


def properties_of(obj: Node) -> Iterator[tuple[Node, Node]]:
    """(key node, value node) of each property of an object literal; nested resources left out."""
    for prop in obj.children:
        if prop.type != "object_property" or prop.children[0].type == "resource_declaration":
            continue
        yield prop.children[0], prop.children[2]


def declared_resources(source: bytes, name: str) -> list[Resource]:
    found: list[Resource] = []

    def walk(node: Node, parent: Resource | None) -> None:
        if node.type == "resource_declaration":
            declared = string_literal(node.children[2])
            assert declared is not None, f"{name}:{node.start_point[0] + 1}: a computed resource type"
            if "@" in declared:
                type_name, api_version = declared.split("@", 1)
            else:  # a nested resource names its type relative to its parent and shares its version
                assert parent is not None, f"{name}:{node.start_point[0] + 1}: {declared} has no parent"
                type_name, api_version = f"{parent.type_name}/{declared}", parent.api_version
            body = value_of(node.children[-1])
            resource = Resource(
                f"{name}:{node.start_point[0] + 1}",
                type_name,
                api_version,
                body if body.type == "object" else None,
            )
            found.append(resource)
            parent = resource
        for child in node.children:
            walk(child, parent)

    walk(PARSER.parse(source).root_node, None)
    return found


def infra_resources() -> list[Resource]:
    return [
        r
        for path in bicep_files()
        for r in declared_resources(path.read_bytes(), str(path.relative_to(ROOT)))
    ]


# --- the type data -----------------------------------------------------------------------------------
@cache
def published_versions() -> dict[str, set[str]]:
    """Every api version of every resource type of the kept namespaces, lower-cased type names."""
    data = json.loads((TYPES / "versions.json").read_text())
    return {type_name.lower(): set(versions) for type_name, versions in data.items()}


@cache
def kept_index() -> dict[str, dict[str, Any]]:
    index = json.loads((TYPES / "index.json").read_text())
    return {key.lower(): entry for key, entry in index.items()}


@cache
def types_file(relative_path: str) -> list[dict[str, Any]]:
    return list(json.loads((TYPES / relative_path).read_text()))


def resolve(types: list[dict[str, Any]], ref: dict[str, str]) -> dict[str, Any]:
    return types[int(ref["$ref"].removeprefix("#/"))]


def discriminated_properties(
    types: list[dict[str, Any]], union: dict[str, Any], obj: Node
) -> dict[str, Any] | None:
    """The properties of the variant the object literal names with a literal discriminator, else None."""
    chosen = next(
        (string_literal(value) for key, value in properties_of(obj) if text(key) == union["discriminator"]),
        None,
    )
    if chosen is None or chosen not in union["elements"]:
        return None
    variant = resolve(types, union["elements"][chosen])
    return {**union.get("baseProperties", {}), **variant.get("properties", {})}


def unknown_keys(
    types: list[dict[str, Any]],
    type_: dict[str, Any],
    value: Node,
    path: str,
    language_keys: frozenset[str] = frozenset(),
) -> Iterator[str]:
    """Paths of the keys the literal `value` sets that its type does not have."""
    if type_["$type"] == "ArrayType" and value.type == "for_statement":
        yield from unknown_keys(types, resolve(types, type_["itemType"]), value_of(value), f"{path}[]")
        return
    if type_["$type"] == "ArrayType" and value.type == "array":
        item_type = resolve(types, type_["itemType"])
        for index, item in enumerate(c for c in value.children if c.is_named and c.type != "comment"):
            yield from unknown_keys(types, item_type, item, f"{path}[{index}]")
        return
    if value.type != "object":
        return  # an expression (parameter, variable, function call): its shape is not in the template
    if type_["$type"] == "ObjectType":
        properties = type_.get("properties", {})
    elif type_["$type"] == "DiscriminatedObjectType":
        found = discriminated_properties(types, type_, value)
        if found is None:
            return  # which variant applies is decided at deploy time: not checked
        properties = found
    else:
        return  # any, a union of object types: not checked
    by_name = {name.lower(): spec for name, spec in properties.items()}
    for key_node, child in properties_of(value):
        key = string_literal(key_node) if key_node.type == "string" else text(key_node)
        if key is None or key in language_keys:
            continue  # an interpolated key (only additionalProperties could take it), or Bicep's own
        where = f"{path}.{key}" if path else key
        spec = by_name.get(key.lower())
        if spec is not None and spec.get("flags", 0) & READ_ONLY:
            yield f"{where} (read-only)"
        elif spec is not None:
            yield from unknown_keys(types, resolve(types, spec["type"]), child, where)
        elif "additionalProperties" in type_:
            yield from unknown_keys(types, resolve(types, type_["additionalProperties"]), child, where)
        else:
            yield where


def resource_type_problems(resources: list[Resource]) -> list[str]:
    problems = []
    for resource in resources:
        versions = published_versions().get(resource.type_name.lower())
        if versions is None:
            problems.append(f"{resource.where}: {resource.type_name} not in the kept type data; {REGENERATE}")
        elif resource.api_version not in versions:
            latest = ", ".join(sorted(versions)[-5:])
            problems.append(f"{resource.where}: {resource.key} is not published (latest: {latest})")
        elif resource.key.lower() not in kept_index():
            problems.append(f"{resource.where}: {resource.key} is published but not kept; {REGENERATE}")
    return problems


def property_problems(resources: list[Resource]) -> list[str]:
    problems = []
    for resource in resources:
        entry = kept_index().get(resource.key.lower())
        if entry is None or resource.body is None:
            continue  # reported by resource_type_problems / a body that is not a literal
        types = types_file(entry["RelativePath"])
        body_type = resolve(types, types[entry["Index"]]["body"])
        for bad in unknown_keys(types, body_type, resource.body, "", LANGUAGE_KEYS):
            problems.append(f"{resource.where}: {resource.key}: {bad}")
    return problems


# --- the grammar --------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_the_bicep_grammar_parses_every_template_without_an_error_node(path: Path) -> None:
    assert syntax_errors(path.read_bytes()) == []


def test_the_grammar_reports_a_broken_template() -> None:
    broken = (
        b"param location string\nresource a 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: 'a'\n"
    )
    assert syntax_errors(broken), "a resource without its closing brace parsed cleanly"
    assert syntax_errors(b"var x = [for i in range(0, 3) i]\n"), "a loop without its colon parsed cleanly"


# --- the type index -----------------------------------------------------------------------------------
def test_infra_declares_resources_the_walk_finds() -> None:
    resources = infra_resources()
    assert len(resources) > 20 and all(r.api_version for r in resources)
    assert "Microsoft.Storage/storageAccounts/blobServices/containers" in {r.type_name for r in resources}


def test_every_resource_type_and_api_version_is_published() -> None:
    assert resource_type_problems(infra_resources()) == []


def test_every_property_the_templates_set_exists_on_its_type() -> None:
    assert property_problems(infra_resources()) == []


def test_a_made_up_api_version_and_made_up_properties_are_caught() -> None:
    source = b"""
resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'stexample'
  location: 'westeurope'
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  colour: 'blue'
  properties: {
    allowBlobPublicAcess: false
    creationTime: '2020-01-01T00:00:00Z'
    networkAcls: { defaultAction: 'Deny', ipRules: [ { value: '10.0.0.1', actoin: 'Allow' } ] }
  }
  resource queues 'queueServices' = {
    name: 'default'
    properties: {
      cors: { corsRules: [for origin in ['https://a.example']: { allowedOrigin: origin }] }
      retention: 7
    }
  }
}
resource future 'Microsoft.Storage/storageAccounts@2023-05-02' = {
  name: 'stfuture'
}
"""
    resources = declared_resources(source, "made-up.bicep")
    assert [r.key for r in resources] == [
        "Microsoft.Storage/storageAccounts@2023-05-01",
        "Microsoft.Storage/storageAccounts/queueServices@2023-05-01",
        "Microsoft.Storage/storageAccounts@2023-05-02",
    ]
    assert resource_type_problems(resources) == [
        "made-up.bicep:21: Microsoft.Storage/storageAccounts@2023-05-02 is not published (latest: "
        + ", ".join(sorted(published_versions()["microsoft.storage/storageaccounts"])[-5:])
        + ")"
    ]
    account = "made-up.bicep:2: Microsoft.Storage/storageAccounts@2023-05-01:"
    queues = "made-up.bicep:13: Microsoft.Storage/storageAccounts/queueServices@2023-05-01:"
    assert property_problems(resources) == [
        f"{account} colour",
        f"{account} properties.allowBlobPublicAcess",
        f"{account} properties.creationTime (read-only)",
        f"{account} properties.networkAcls.ipRules[0].actoin",
        f"{queues} properties.cors.corsRules[].allowedOrigin",
        f"{queues} properties.retention",
    ]


# --- checkov skips --------------------------------------------------------------------------------------
def test_every_checkov_skip_names_one_check_and_says_why() -> None:
    """Runs without checkov installed too; tests/test_infra.py checks each skip is still needed."""
    skips = []

    def comments(node: Node) -> Iterator[Node]:
        if node.type == "comment":
            yield node
        for child in node.children:
            yield from comments(child)

    for path in bicep_files():
        for comment in comments(PARSER.parse(path.read_bytes()).root_node):
            if "checkov:skip" in text(comment):
                skips.append((f"{path.relative_to(ROOT)}:{comment.start_point[0] + 1}", text(comment)))
    assert skips, "no checkov skip found: the scan below would prove nothing"
    unjustified = [
        where
        for where, comment in skips
        if not (match := re.fullmatch(r"//\s*checkov:skip=CKV2?_AZURE_\d+:\s*(.+)", comment))
        or len(match.group(1).split()) < 8
    ]
    assert unjustified == []
