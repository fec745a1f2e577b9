"""infra/ against the code it deploys, offline: a real Bicep parser (pycep), a real IaC scanner (checkov),
the app's own settings parser, its function bindings, the emulator's workspace and an Event Grid filter
evaluator.

pycep writes identifiers and string literals alike as plain strings; `BicepEvaluator` reads a string
naming a parameter, variable or loop item as that value, and anything else as a literal. It evaluates
only the expressions infra/ uses where values matter (app settings, queue and table names, alert rules,
the Event Grid filter) and raises on anything else, so a new construct fails loudly instead of being
read wrong. Module outputs evaluate to the sample values in `SAMPLE_OUTPUTS`, after checking that the
module declares the output.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from azure.monitor.ingestion import LogsIngestionClient
from azure.monitor.query import LogsQueryClient, LogsQueryResult
from pycep import BicepParser

from backupwarden.domain.alert_rules import ALERT_RULES, AlertRuleDefinition
from backupwarden.domain.kql import KQL_DIR
from backupwarden.domain.log_schema import AUTOMATION_ACTIONS, JOB_OUTCOMES, LogTable
from backupwarden.domain.vm_events import VmWritten, read_vm_write
from backupwarden.settings import SETTING_NAMES, Settings, SettingsError
from devtools.demo import DEMO_DCR_ID, DEMO_WORKSPACE_ID, provision_log_analytics
from emulator import Emulator, EmulatorServer
from emulator.compute.models import ComputeBackend
from emulator.eventgrid.models import EventGridBackend
from emulator.monitor.models import MonitorBackend
from functions.new_vms import VM_EVENT_QUEUE
from tests.conftest import StaticToken

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"
FUNCTION_APP = INFRA / "app" / "function-app.bicep"
STORAGE = INFRA / "app" / "storage.bicep"
ALERTS = INFRA / "app" / "alerts.bicep"
WORKBOOK = INFRA / "app" / "workbook.bicep"
EVENTS = INFRA / "subscription" / "events.bicep"
SCOPE = INFRA / "subscription" / "scope.bicep"
CHECKOV = ROOT / ".venv-iac" / "bin" / "checkov"

BicepTree = Mapping[str, Any]
GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
SUBSCRIPTION = "6b1c2d3e-4f50-4a61-8b72-93a4b5c6d7e8"
TENANT = "0e1d2c3b-4a59-4687-9a6b-5c4d3e2f1a0b"
WEBHOOK_APP_ID = "3f6a1b2c-4d5e-4f60-8a71-b2c3d4e5f607"
WEBHOOK_APP_OBJECT_ID = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
STORAGE_NAME = "stbwq2x7k5m3n8p4r"
RG_ID = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-bw-test"
VM_GROUP_ID = f"/subscriptions/{SUBSCRIPTION}/resourcegroups/rg-app"
SAMPLE_OUTPUTS = {
    "identity.outputs.IDENTITY_RESOURCE_ID": (
        f"{RG_ID}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-backupwarden"
    ),
    "identity.outputs.IDENTITY_CLIENT_ID": "0c1d2e3f-4a5b-4c6d-8e7f-8091a2b3c4d5",
    "identity.outputs.IDENTITY_PRINCIPAL_ID": "1d2e3f4a-5b6c-4d7e-8f90-a1b2c3d4e5f6",
    "storage.outputs.STORAGE_ACCOUNT_NAME": STORAGE_NAME,
    "storage.outputs.STORAGE_ACCOUNT_RESOURCE_ID": (
        f"{RG_ID}/providers/Microsoft.Storage/storageAccounts/{STORAGE_NAME}"
    ),
    "storage.outputs.STORAGE_BLOB_ENDPOINT": f"https://{STORAGE_NAME}.blob.core.windows.net/",
    "storage.outputs.STORAGE_QUEUE_ENDPOINT": f"https://{STORAGE_NAME}.queue.core.windows.net/",
    "storage.outputs.STORAGE_TABLE_ENDPOINT": f"https://{STORAGE_NAME}.table.core.windows.net/",
    "storage.outputs.DEPLOYMENT_CONTAINER_URL": f"https://{STORAGE_NAME}.blob.core.windows.net/app-package",
    "monitoring.outputs.BACKUPWARDEN_LOGS_INGESTION_ENDPOINT": (
        "https://dce-backupwarden-westeurope-a1b2.westeurope-1.ingest.monitor.azure.com"
    ),
    "monitoring.outputs.BACKUPWARDEN_DCR_IMMUTABLE_ID": "dcr-0a1b2c3d4e5f60718293a4b5c6d7e8f9",
    "monitoring.outputs.BACKUPWARDEN_LOG_ANALYTICS_WORKSPACE_ID": "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9",
    "monitoring.outputs.LOG_ANALYTICS_WORKSPACE_RESOURCE_ID": (
        f"{RG_ID}/providers/Microsoft.OperationalInsights/workspaces/log-backupwarden"
    ),
    "appInsights.outputs.APPLICATIONINSIGHTS_CONNECTION_STRING": (
        "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
        "IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/"
    ),
    "functionApp.outputs.FUNCTION_APP_NAME": "func-backupwarden-test",
    "alerts.outputs.ACTION_GROUP_RESOURCE_ID": (
        f"{RG_ID}/providers/Microsoft.Insights/actionGroups/ag-backupwarden"
    ),
    "network.outputs.APP_SUBNET_ID": (
        f"{RG_ID}/providers/Microsoft.Network/virtualNetworks/vnet-backupwarden/subnets/app"
    ),
}
FUNCTION_PROPERTIES = {
    ("subscription", "subscriptionId"): SUBSCRIPTION,
    ("subscription", "id"): f"/subscriptions/{SUBSCRIPTION}",
    ("tenant", "tenantId"): TENANT,
    ("environment", "resourceManager"): "https://management.azure.com/",
    ("environment", "suffixes.storage"): "core.windows.net",
}
# The azd environment of a first `azd up`; variants add to it.
AZD_ENVIRONMENT = {"AZURE_ENV_NAME": "bw-test", "AZURE_LOCATION": "westeurope"}
SECURE_WEBHOOK = {
    "BACKUPWARDEN_WEBHOOK_APP_ID": WEBHOOK_APP_ID,
    "BACKUPWARDEN_WEBHOOK_APP_OBJECT_ID": WEBHOOK_APP_OBJECT_ID,
}
VARIANTS = {
    "plain webhook": AZD_ENVIRONMENT,
    "secure webhook": {**AZD_ENVIRONMENT, **SECURE_WEBHOOK},
    "three subscriptions, wired": {
        **AZD_ENVIRONMENT,
        "BACKUPWARDEN_ADDITIONAL_SUBSCRIPTIONS": (
            "7c2d3e4f-5061-4b72-8c83-a4b5c6d7e8f9,8d3e4f50-6172-4c83-9d94-b5c6d7e8f9a0"
        ),
        "BACKUPWARDEN_SEPARATE_SUBSCRIPTIONS": "9e4f5061-7283-4d94-8ea5-c6d7e8f9a0b1",
        "BACKUPWARDEN_FUNCTIONS_DEPLOYED": "true",
    },
}

# Settings the code reads that the deployment leaves unset, and why.
NOT_DEPLOYED = {
    "AzureWebJobsStorage": "a connection string carries the account key; the app connects by identity "
    "(AzureWebJobsStorage__*) and the account takes no shared keys",
    "BACKUPWARDEN_STATIC_TOKEN": "emulator and replay only; in Azure the managed identity gets tokens",
    "BACKUPWARDEN_CA_BUNDLE": "emulator only; in Azure the system trust store is right",
}
# App settings the code does not read but the Functions host or azure-identity does.
PLATFORM_SETTINGS = {
    "AzureWebJobsStorage__blobServiceUri": "Functions host: leases, keys",
    "AzureWebJobsStorage__credential": "Functions host: connect with a managed identity",
    "AzureWebJobsStorage__clientId": "Functions host: which managed identity",
    "AZURE_CLIENT_ID": "azure-identity's DefaultAzureCredential: which managed identity",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "Functions host: where telemetry goes",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Functions host: send telemetry with the identity",
    "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "Python worker: export the app's logs with their fields",
}
# Settings fields the deployment sets on purpose; every other field keeps the code's default.
SET_BY_INFRA = {
    "subscriptions", "logs_ingestion_endpoint", "dcr_immutable_id", "workspace_id",
    "storage_table_uri", "storage_queue_uri", "webhook_audience", "tenant_id",
}  # fmt: skip

# Built-in role ids as documented in "Azure built-in roles" (Microsoft Learn,
# learn.microsoft.com/azure/role-based-access-control/built-in-roles; source: MicrosoftDocs/azure-docs,
# articles/role-based-access-control/built-in-roles.md, table "All"). Keyed by role name.
DOCUMENTED_ROLE_IDS = {
    "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "Backup Operator": "00c29273-979b-4161-815c-10b084fb9324",
    "Virtual Machine Contributor": "9980e02c-c2be-4d73-94e8-173b1dc7cf3c",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "Log Analytics Reader": "73c42c96-874c-492b-b04d-ab87d138a893",
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Queue Data Message Sender": "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
}
ROLE_VARIABLE = re.compile(r"^var (?P<name>[a-z][A-Za-z]*)RoleId = '(?P<id>" + GUID + r")'$")


# --- parsing ---------------------------------------------------------------------------------------
@functools.cache
def parse_bicep(path: Path) -> BicepTree:
    tree: BicepTree = BicepParser().parse(file_path=path)
    return tree


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def module_path(owner: Path, tree: BicepTree, name: str) -> Path:
    return (owner.parent / str(tree["modules"][name]["detail"]["path"])).resolve()


def body(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The body of a resource or module, looped or conditional or not."""
    return config["config"] if "loop_type" in config or "condition" in config else config


def resources_of_type(tree: BicepTree, resource_type: str) -> dict[str, Mapping[str, Any]]:
    return {
        name: body(resource["config"])
        for name, resource in tree.get("resources", {}).items()
        if resource["type"] == resource_type
    }


def is_node(value: Any, kind: str) -> bool:
    """Whether `value` is pycep's {"function": …} or {"operator": …}, not an object with such a key."""
    return isinstance(value, Mapping) and list(value) == [kind] and isinstance(value[kind], Mapping)


def concat(**parts: Any) -> Any:
    """Bicep's concat(): strings joined, or arrays chained (arguments arrive as arg_1, arg_2, …)."""
    ordered = [parts[f"arg_{index}"] for index in range(1, len(parts) + 1)]
    if all(isinstance(part, str) for part in ordered):
        return "".join(ordered)
    return [item for part in ordered for item in part]


def unquoted(key: str) -> str:
    return key[1:-1] if len(key) > 1 and key[0] == key[-1] == "'" else key


def bicep_string(text: str) -> str:
    """A Bicep single-quoted string's escapes, as pycep leaves them, decoded."""
    escapes = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", "'": "'", "$": "$"}
    return re.sub(r"\\(.)", lambda m: escapes.get(m.group(1), m.group(0)), text)


def iso_duration(text: str) -> timedelta:
    match = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", text)
    assert match and text not in ("P", "PT"), f"not an ISO 8601 duration: {text!r}"
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


# --- a small Bicep evaluator -----------------------------------------------------------------------
class CannotEvaluate(Exception):
    pass


class BicepEvaluator:
    """Values of one Bicep file's expressions, given its parameters (and sample module outputs)."""

    def __init__(self, path: Path, params: Mapping[str, Any], locals_: Mapping[str, Any] | None = None):
        self.path = path
        self.tree = parse_bicep(path)
        self.params = dict(params)
        self.locals = dict(locals_ or {})
        unknown = set(self.params) - set(self.tree.get("parameters", {}))
        if unknown:
            raise CannotEvaluate(f"{path.name} declares no parameters {sorted(unknown)}")
        for name, value in self.params.items():  # ARM refuses a value outside @allowed
            for decorator in self.tree["parameters"][name]["decorators"]:
                if decorator["type"] == "allowed" and value not in decorator["argument"]:
                    raise CannotEvaluate(f"{path.name}: {name}={value!r} is not allowed")

    def with_locals(self, **values: Any) -> BicepEvaluator:
        return BicepEvaluator(self.path, self.params, {**self.locals, **values})

    def variable(self, name: str) -> Any:
        return self.evaluate(self.tree["variables"][name]["value"])

    def identifier(self, name: str) -> Any:
        if name in self.locals:
            return self.locals[name]
        if name in self.params:
            return self.params[name]
        declared = self.tree.get("parameters", {}).get(name)
        if declared is not None:
            if declared["default"] is None:
                raise CannotEvaluate(f"{self.path.name}: parameter {name} has no value and no default")
            return self.evaluate(declared["default"])
        if name in self.tree.get("variables", {}):
            return self.variable(name)
        raise KeyError(name)

    def evaluate(self, node: Any) -> Any:
        if isinstance(node, str):
            return self._text(node)
        if isinstance(node, list):
            return [self.evaluate(item) for item in node]
        if is_node(node, "function"):
            return self._function(node["function"])
        if is_node(node, "operator"):
            return self._operator(node["operator"])
        if isinstance(node, Mapping) and "loop_type" in node:
            return self._loop(node)
        if isinstance(node, Mapping):
            return {unquoted(key): self.evaluate(value) for key, value in node.items()}
        return node

    def _loop(self, node: Mapping[str, Any]) -> list[Any]:
        kind, detail = node["loop_type"]["type"], node["loop_type"]["detail"]
        if kind == "array":
            items = self.evaluate(detail["array_name"])
        elif kind == "object":  # items(): the object's {key, value} pairs
            items = [
                {"key": key, "value": value} for key, value in self.evaluate(detail["object_name"]).items()
            ]
        else:
            raise CannotEvaluate(f"{self.path.name}: loop {kind} is not evaluated here")
        return [self.with_locals(**{detail["item_name"]: item}).evaluate(node["config"]) for item in items]

    def _text(self, text: str) -> Any:
        try:
            return self.identifier(text)
        except KeyError:
            pass
        return re.sub(r"\$\{([^{}]+)\}", lambda m: self._as_string(self._segment(m.group(1))), text)

    def _segment(self, expression: str) -> Any:
        call = re.fullmatch(r"(\w+)\(\)\.(\w+(?:\.\w+)*)", expression)
        if call:
            return self._function_property(call.group(1), call.group(2))
        trimmed = re.fullmatch(r"trim\(([A-Za-z_]\w*)\)", expression)  # '${trim(subscriptionId)}'
        if trimmed:
            return self._as_string(self.identifier(trimmed.group(1))).strip()
        if re.fullmatch(r"[A-Za-z_]\w*(\.\w+)*", expression):
            return self._path(expression.split("."))
        raise CannotEvaluate(f"{self.path.name}: cannot evaluate ${{{expression}}}")

    def _path(self, parts: list[str]) -> Any:
        head, *rest = parts
        if head in self.tree.get("modules", {}) and rest[:1] == ["outputs"] and len(rest) == 2:
            return self._module_output(head, rest[1])
        value = self.identifier(head)
        for part in rest:
            value = value[part]
        return value

    def _module_output(self, module: str, output: str) -> Any:
        declared = parse_bicep(module_path(self.path, self.tree, module)).get("outputs", {})
        if output not in declared:
            raise CannotEvaluate(f"{self.path.name}: module {module} has no output {output}")
        key = f"{module}.outputs.{output}"
        if key not in SAMPLE_OUTPUTS:
            raise CannotEvaluate(f"no sample value for {key}: add one to SAMPLE_OUTPUTS")
        return SAMPLE_OUTPUTS[key]

    def _function_property(self, name: str, prop: str) -> Any:
        if (name, prop) not in FUNCTION_PROPERTIES:
            raise CannotEvaluate(f"{self.path.name}: no value for {name}().{prop}")
        return FUNCTION_PROPERTIES[(name, prop)]

    def _function(self, function: Mapping[str, Any]) -> Any:
        kind = function["type"]
        args = {key: self.evaluate(value) for key, value in (function.get("parameters") or {}).items()}
        if kind in ("subscription", "tenant", "environment") and not any(args.values()):
            prop = re.sub(r"^\[Token\('STRING', '(\w+)'\)\]$", r"\1", str(function.get("property_name")))
            return self._function_property(kind, prop)
        simple: dict[str, Callable[..., Any]] = {
            "empty": lambda item_to_test: item_to_test in ("", [], {}, None),
            "contains": lambda container, item_to_find: item_to_find in container,
            "string": self._as_string,
            "to_lower": lambda string_to_change: string_to_change.lower(),
            "trim": lambda string_to_trim: string_to_trim.strip(),
            "last": lambda arg_1: arg_1[-1],
            "union": lambda arg_1, arg_2: {**arg_1, **arg_2},
            "concat": concat,
            "join": lambda input_array, delimiter: delimiter.join(input_array),
            "unique_string": lambda **parts: hashlib.sha256(repr(sorted(parts.items())).encode()).hexdigest()[
                :13
            ],
            "load_text_content": lambda file_path, encoding: (self.path.parent / file_path).read_text(),
        }
        if kind == "split":
            parts = args["input_string"].split(args["delimiter"])
            return parts if function.get("index") is None else parts[function["index"]]
        if kind == "string":
            return self._as_string(args["value_to_convert"])
        if kind not in simple:
            raise CannotEvaluate(f"{self.path.name}: function {kind} is not evaluated here")
        return simple[kind](**args)

    def _operator(self, operator: Mapping[str, Any]) -> Any:
        kind, operands = operator["type"], operator["operands"]
        if kind == "conditional":
            chosen = "true_value" if self.evaluate(operands["condition"]) else "false_value"
            return self.evaluate(operands[chosen])
        if kind == "property_accessor":
            return self._path(self._accessor_parts(operator))
        values = {key: self.evaluate(value) for key, value in operands.items()}
        if kind == "not":
            return not values["bool_value"]
        if kind in ("equals", "not_equals"):
            equal = values["operand_1"] == values["operand_2"]
            return equal if kind == "equals" else not equal
        if kind in ("and", "or"):
            return (all if kind == "and" else any)((values["operand_1"], values["operand_2"]))
        raise CannotEvaluate(f"{self.path.name}: operator {kind} is not evaluated here")

    def _accessor_parts(self, node: Any) -> list[str]:
        if isinstance(node, str):
            return [node]
        operator = node.get("operator", node)
        if operator.get("type") != "property_accessor":
            raise CannotEvaluate(f"{self.path.name}: cannot follow {node!r}")
        operands = operator["operands"]
        return self._accessor_parts(operands["operand_1"]) + self._accessor_parts(operands["operand_2"])

    @staticmethod
    def _as_string(value: Any) -> str:
        if isinstance(value, bool):
            return "True" if value else "False"  # what ARM's string() gives
        if isinstance(value, list | dict):
            return json.dumps(value, separators=(",", ":"))
        return str(value)


def azd_substitute(text: str, environment: Mapping[str, str]) -> str:
    """main.parameters.json's ${NAME} and ${NAME=default}, as azd fills them in."""

    def value(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(3)
        if name in environment:
            return environment[name]
        if default is None:
            raise CannotEvaluate(f"azd environment has no {name} and the parameter no default")
        return default

    return re.sub(r"\$\{(\w+)(=([^}]*))?\}", value, text)


def main_evaluator(environment: Mapping[str, str]) -> BicepEvaluator:
    """main.bicep with the parameters azd passes from main.parameters.json for `environment`."""
    declared = parse_bicep(MAIN)["parameters"]
    given = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    params: dict[str, Any] = {}
    for name, entry in given.items():
        raw = azd_substitute(entry["value"], environment)
        kind = declared[name]["type"]
        params[name] = raw.lower() == "true" if kind == "bool" else int(raw) if kind == "int" else raw
    return BicepEvaluator(MAIN, params)


def module_evaluator(parent: BicepEvaluator, module: str) -> BicepEvaluator:
    """The module's file, with the parameters the parent passes it."""
    config = body(parent.tree["modules"][module]["config"])
    params = {name: parent.evaluate(value) for name, value in config.get("params", {}).items()}
    return BicepEvaluator(module_path(parent.path, parent.tree, module), params)


# --- what the code reads -------------------------------------------------------------------------
class RecordingEnvironment(Mapping[str, str]):
    """An environment that notes every name looked up in it."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.looked_up: list[str] = []

    def __getitem__(self, key: str) -> str:
        self.looked_up.append(key)
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def names_read_by_from_env(values: Mapping[str, str]) -> set[str]:
    environment = RecordingEnvironment(values)
    Settings.from_env(environment)
    return set(environment.looked_up)


@functools.cache
def registered_functions() -> tuple[Any, ...]:
    """The functions function_app registers, from a fresh import: `FunctionApp.get_functions()` refuses a
    second call on the same app, and other tests call it too; a fresh app is left for the next caller."""
    module = importlib.import_module("function_app")
    functions = tuple(importlib.reload(module).app.get_functions())
    importlib.reload(module)
    return functions


def host_binding_settings() -> dict[str, set[str]]:
    """%NAME% expressions in the function bindings: app settings the Functions host resolves, by function."""
    found: dict[str, set[str]] = {}
    for function in registered_functions():
        for binding in function.get_bindings():
            for value in vars(binding).values():
                for name in re.findall(r"%(\w+)%", value if isinstance(value, str) else ""):
                    found.setdefault(name, set()).add(function.get_function_name())
    return found


def functions_by_trigger() -> dict[str, Any]:
    """Each function's trigger binding, by function name."""
    return {
        function.get_function_name(): next(b for b in function.get_bindings() if b.type.endswith("Trigger"))
        for function in registered_functions()
    }


def deployed_app_settings(environment: Mapping[str, str]) -> dict[str, Any]:
    """The function app's app settings as ARM would write them for this azd environment."""
    app = module_evaluator(main_evaluator(environment), "functionApp")
    (site,) = resources_of_type(app.tree, "Microsoft.Web/sites").values()
    pairs = app.evaluate(site["properties"]["siteConfig"]["appSettings"])
    names = [pair["name"] for pair in pairs]
    assert len(names) == len(set(names)), f"an app setting is set twice: {names}"
    return {pair["name"]: pair["value"] for pair in pairs}


# --- every .bicep file parses and is deployed ------------------------------------------------------
@pytest.mark.parametrize("path", bicep_files(), ids=lambda path: str(path.relative_to(INFRA)))
def test_every_bicep_file_parses_and_its_modules_exist(path: Path) -> None:
    tree = parse_bicep(path)
    assert tree.get("resources") or tree.get("modules") or tree.get("outputs"), f"{path} declares nothing"
    for name in tree.get("modules", {}):
        target = module_path(path, tree, name)
        assert target.is_file(), f"{path.name}: module {name} points at missing {target}"


def test_every_bicep_file_is_reachable_from_main() -> None:
    reached: set[Path] = set()
    pending = [MAIN.resolve()]
    while pending:
        path = pending.pop()
        if path not in reached:
            reached.add(path)
            tree = parse_bicep(path)
            pending.extend(module_path(path, tree, name) for name in tree.get("modules", {}))
    assert {path.resolve() for path in bicep_files()} == reached


def test_outputs_are_upper_snake_for_azd() -> None:
    for path in bicep_files():
        for name in parse_bicep(path).get("outputs", {}):
            assert re.fullmatch(r"[A-Z][A-Z0-9_]*", name), f"{path.name}: output {name}"


# --- checkov ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkov_report() -> dict[str, Any]:
    if not CHECKOV.exists():
        message = f"{CHECKOV.relative_to(ROOT)} is missing: `make iac` (or `make test`) installs checkov"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    run = subprocess.run(
        [str(CHECKOV), "-d", "infra", "--framework", "bicep", "--skip-download", "--output", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.stdout.strip(), f"checkov printed nothing (exit {run.returncode}): {run.stderr[-2000:]}"
    report = json.loads(run.stdout)
    assert isinstance(report, dict), "one framework, one report"
    return report


def test_checkov_scans_infra_and_finds_no_failed_check(checkov_report: dict[str, Any]) -> None:
    summary = checkov_report["summary"]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}:{c['file_line_range']}): {c['check_name']}"
        for c in checkov_report.get("results", {}).get("failed_checks", [])
    ]
    assert failed == []
    assert summary["failed"] == 0
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 0 and summary["resource_count"] > 0, "checkov checked nothing"


def test_every_checkov_skip_is_inline_with_a_reason_and_still_needed(checkov_report: dict[str, Any]) -> None:
    skipped = checkov_report.get("results", {}).get("skipped_checks", [])
    reasons = {
        (c["file_path"].lstrip("/"), c["check_id"]): c["check_result"]["suppress_comment"] for c in skipped
    }
    assert all(len(reason) > 40 for reason in reasons.values()), reasons
    inline = {
        (str(path.relative_to(INFRA)), check)
        for path in bicep_files()
        for check in re.findall(r"//\s*checkov:skip=([A-Z0-9_]+)", path.read_text())
    }
    assert inline == set(reasons), "an inline skip checkov no longer applies, or a skip from elsewhere"


# --- app settings = what the code reads --------------------------------------------------------------
def test_setting_names_are_exactly_what_from_env_reads() -> None:
    identity_storage = {
        "AzureWebJobsStorage__accountName": "stbwexample",
        "BACKUPWARDEN_CREDENTIAL": "static-token",
        "BACKUPWARDEN_STATIC_TOKEN": "token",
        "BACKUPWARDEN_WEBHOOK_AUDIENCE": "api://backupwarden",
        "BACKUPWARDEN_TENANT_ID": TENANT,
    }
    read = names_read_by_from_env(identity_storage) | names_read_by_from_env(
        {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}
    )
    assert len(SETTING_NAMES) == len(set(SETTING_NAMES))
    assert set(SETTING_NAMES) == read


def test_app_settings_are_the_settings_the_code_reads() -> None:
    deployed = set(deployed_app_settings(AZD_ENVIRONMENT))
    code = set(SETTING_NAMES)
    assert set(NOT_DEPLOYED) <= code
    assert sorted(code - set(NOT_DEPLOYED) - deployed) == [], "read by the code, missing from the app"
    assert sorted(deployed - code - set(PLATFORM_SETTINGS)) == [], "deployed, but nothing reads it"
    assert sorted(deployed & set(NOT_DEPLOYED)) == []


@pytest.mark.parametrize("variant", VARIANTS)
def test_deployed_app_settings_are_strings_the_code_accepts(variant: str) -> None:
    deployed = deployed_app_settings(VARIANTS[variant])
    assert all(isinstance(value, str) for value in deployed.values()), deployed
    settings = Settings.from_env(deployed)
    defaults = Settings()
    changed = {
        f.name for f in dataclasses.fields(Settings) if getattr(settings, f.name) != getattr(defaults, f.name)
    }
    assert changed - SET_BY_INFRA == set(), "infra changes a setting's default behind the code's back"
    assert settings.storage_connection_string is None, "identity only: no connection string"
    assert settings.storage_table_uri == f"https://{STORAGE_NAME}.table.core.windows.net"
    assert settings.storage_queue_uri == f"https://{STORAGE_NAME}.queue.core.windows.net"
    assert settings.dcr_immutable_id == SAMPLE_OUTPUTS["monitoring.outputs.BACKUPWARDEN_DCR_IMMUTABLE_ID"]
    assert (
        settings.logs_ingestion_endpoint
        == SAMPLE_OUTPUTS["monitoring.outputs.BACKUPWARDEN_LOGS_INGESTION_ENDPOINT"]
    )
    assert (
        settings.workspace_id == SAMPLE_OUTPUTS["monitoring.outputs.BACKUPWARDEN_LOG_ANALYTICS_WORKSPACE_ID"]
    )
    extra = [
        VARIANTS[variant].get(name, "")
        for name in ("BACKUPWARDEN_ADDITIONAL_SUBSCRIPTIONS", "BACKUPWARDEN_SEPARATE_SUBSCRIPTIONS")
    ]
    assert settings.subscriptions == (SUBSCRIPTION, *filter(None, ",".join(extra).split(",")))


def test_scope_is_deployed_to_this_and_the_additional_subscriptions_only() -> None:
    main = main_evaluator(VARIANTS["three subscriptions, wired"])
    modules = parse_bicep(MAIN)["modules"]
    loop = modules["additionalSubscriptions"]["config"]["loop_type"]["detail"]
    assert main.evaluate(loop["array_name"]) == VARIANTS["three subscriptions, wired"][
        "BACKUPWARDEN_ADDITIONAL_SUBSCRIPTIONS"
    ].split(",")
    assert module_path(MAIN, parse_bicep(MAIN), "additionalSubscriptions") == SCOPE
    assert module_path(MAIN, parse_bicep(MAIN), "deploymentSubscription") == SCOPE


def test_a_secure_webhook_sets_audience_and_tenant_together() -> None:
    plain = deployed_app_settings(VARIANTS["plain webhook"])
    secure = deployed_app_settings(VARIANTS["secure webhook"])
    names = ("BACKUPWARDEN_WEBHOOK_AUDIENCE", "BACKUPWARDEN_TENANT_ID")
    assert [plain[name] for name in names] == ["", ""]
    assert [secure[name] for name in names] == [f"api://{WEBHOOK_APP_ID}", TENANT]
    settings = Settings.from_env(secure)
    assert (settings.webhook_audience, settings.tenant_id) == (f"api://{WEBHOOK_APP_ID}", TENANT)


def test_required_settings_are_required_in_the_deployment() -> None:
    """What the code requires fails the start when missing, so the deployment must set it every time."""
    secure = deployed_app_settings(VARIANTS["secure webhook"])
    without_tenant = {**secure, "BACKUPWARDEN_TENANT_ID": ""}
    with pytest.raises(SettingsError, match=r"^BACKUPWARDEN_TENANT_ID: missing"):
        Settings.from_env(without_tenant)
    storage = [name for name in secure if name.startswith("AzureWebJobsStorage")]
    with pytest.raises(SettingsError, match=r"^AzureWebJobsStorage: missing"):
        Settings.from_env({name: value for name, value in secure.items() if name not in storage})
    for variant, environment in VARIANTS.items():
        deployed = deployed_app_settings(environment)
        for name, functions in host_binding_settings().items():
            assert deployed.get(name, "").strip(), f"{variant}: {name} (read by {sorted(functions)}) unset"


def test_a_setting_read_by_the_host_but_not_deployed_is_noticed() -> None:
    deployed = deployed_app_settings(AZD_ENVIRONMENT)
    bound = host_binding_settings()
    assert {"SWEEP_SCHEDULE", "OUTCOMES_SCHEDULE", "BACKUPWARDEN_PROTECT_QUEUE"} <= set(bound)
    deployed.pop("OUTCOMES_SCHEDULE")
    assert [name for name in bound if not deployed.get(name)] == ["OUTCOMES_SCHEDULE"]


# --- storage: the queues and tables the code uses ------------------------------------------------
def created_queues_and_tables(environment: Mapping[str, str]) -> tuple[set[str], set[str]]:
    storage = module_evaluator(main_evaluator(environment), "storage")
    queues = resources_of_type(storage.tree, "Microsoft.Storage/storageAccounts/queueServices/queues")
    tables = resources_of_type(storage.tree, "Microsoft.Storage/storageAccounts/tableServices/tables")
    assert list(queues.values()) == [{"parent": "queueService", "name": "queueName"}]
    assert list(tables.values()) == [{"parent": "tableService", "name": "tableName"}]
    return set(storage.variable("queueNames")), set(storage.variable("tableNames"))


def test_storage_creates_every_queue_the_functions_listen_on_and_no_other() -> None:
    deployed = deployed_app_settings(AZD_ENVIRONMENT)
    listened = {
        re.sub(r"%(\w+)%", lambda m: deployed[m.group(1)], trigger.queue_name)
        for trigger in functions_by_trigger().values()
        if trigger.type == "queueTrigger"
    }
    queues, _ = created_queues_and_tables(AZD_ENVIRONMENT)
    assert queues == listened
    assert deployed["BACKUPWARDEN_PROTECT_QUEUE"] in queues
    assert deployed["BACKUPWARDEN_REMEDIATION_QUEUE"] in queues
    assert deployed["BACKUPWARDEN_SWEEP_QUEUE"] in queues


def test_storage_creates_the_tables_the_settings_name() -> None:
    settings = Settings.from_env(deployed_app_settings(AZD_ENVIRONMENT))
    _, tables = created_queues_and_tables(AZD_ENVIRONMENT)
    assert tables == {settings.ledger_table, settings.outbox_table, settings.alert_dedup_table}


def test_storage_takes_no_shared_keys_and_the_app_only_https() -> None:
    (account,) = resources_of_type(parse_bicep(STORAGE), "Microsoft.Storage/storageAccounts").values()
    properties = account["properties"]
    assert (properties["allowSharedKeyAccess"], properties["allowBlobPublicAccess"]) == (False, False)
    assert (properties["minimumTlsVersion"], properties["supportsHttpsTrafficOnly"]) == ("TLS1_2", True)
    (site,) = resources_of_type(parse_bicep(FUNCTION_APP), "Microsoft.Web/sites").values()
    assert site["kind"] == "functionapp,linux" and site["identity"]["type"] == "UserAssigned"
    assert site["properties"]["httpsOnly"] is True
    # the version is a parameter: tests/test_runtime_version.py
    assert site["properties"]["functionAppConfig"]["runtime"]["name"] == "python"
    site_config = site["properties"]["siteConfig"]
    assert (site_config["minTlsVersion"], site_config["ftpsState"]) == ("1.2", "Disabled")
    publishing = resources_of_type(
        parse_bicep(FUNCTION_APP), "Microsoft.Web/sites/basicPublishingCredentialsPolicies"
    )
    assert {(p["name"], p["properties"]["allow"]) for p in publishing.values()} == {
        ("ftp", False),
        ("scm", False),
    }
    (plan,) = resources_of_type(parse_bicep(FUNCTION_APP), "Microsoft.Web/serverfarms").values()
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}


# --- alert rules = backupwarden/domain/alert_rules.py -------------------------------------------------------
def bicep_alert_rules() -> dict[str, dict[str, Any]]:
    rules = BicepEvaluator(ALERTS, {}).evaluate(parse_bicep(ALERTS)["variables"]["alertRules"]["value"])
    return {rule["name"]: rule for rule in rules}


def test_alert_rule_resources_take_every_field_from_the_rule_list() -> None:
    rules = parse_bicep(ALERTS)["resources"]["rules"]["config"]
    assert rules["loop_type"]["detail"] == {"item_name": "rule", "array_name": "alertRules"}
    resource = rules["config"]
    properties = resource["properties"]
    criterion = properties["criteria"]["allOf"][0]
    evaluator = BicepEvaluator(ALERTS, {})
    for rule in bicep_alert_rules().values():
        item = evaluator.with_locals(rule=rule)
        assert item.evaluate(resource["name"]) == rule["name"]
        assert item.evaluate(properties["evaluationFrequency"]) == rule["evaluationFrequency"]
        assert item.evaluate(properties["windowSize"]) == rule["windowSize"]
        assert item.evaluate(properties["severity"]) == rule["severity"]
        assert [
            item.evaluate(criterion[key]) for key in ("query", "operator", "threshold", "dimensions")
        ] == [rule["query"], rule["operator"], rule["threshold"], rule["dimensions"]]
    assert criterion["timeAggregation"] == "Count"
    assert properties["scopes"] == ["workspaceResourceId"]


@pytest.mark.parametrize("definition", ALERT_RULES, ids=lambda rule: rule.name)
def test_alert_rule_matches_alert_rules_py(definition: AlertRuleDefinition) -> None:
    rules = bicep_alert_rules()
    assert set(rules) == {rule.name for rule in ALERT_RULES}
    rule = rules[definition.name]
    assert iso_duration(rule["evaluationFrequency"]) == definition.frequency
    assert iso_duration(rule["windowSize"]) == definition.window
    assert (rule["operator"], rule["threshold"], rule["severity"]) == (
        definition.operator,
        definition.threshold,
        definition.severity,
    )
    assert [d["name"] for d in rule["dimensions"]] == list(definition.dimensions)
    assert all(d["operator"] == "Include" and d["values"] == ["*"] for d in rule["dimensions"])
    assert rule["description"] == definition.description


@pytest.mark.parametrize("definition", ALERT_RULES, ids=lambda rule: rule.name)
def test_alert_rule_loads_the_kql_file_the_code_uses(definition: AlertRuleDefinition) -> None:
    raw = next(
        r for r in parse_bicep(ALERTS)["variables"]["alertRules"]["value"] if r["name"] == definition.name
    )
    loaded = raw["query"]["function"]
    assert loaded["type"] == "load_text_content"
    assert (
        ALERTS.parent / loaded["parameters"]["file_path"]
    ).resolve() == KQL_DIR / f"{definition.kql_name}.kql"


def test_the_webhook_and_the_event_subscription_point_at_real_functions() -> None:
    triggers = functions_by_trigger()
    alerts = BicepEvaluator(ALERTS, {})
    webhook = triggers[alerts.variable("webhookFunctionName")]
    assert webhook.type == "httpTrigger" and webhook.route == alerts.variable("webhookRoute")
    assert [method.value for method in webhook.methods] == ["POST"]
    (queued,) = [t for t in triggers.values() if getattr(t, "queue_name", "") == VM_EVENT_QUEUE]
    assert queued.type == "queueTrigger"
    assert parse_bicep(MAIN)["variables"]["vmEventQueueName"]["value"] == VM_EVENT_QUEUE


# --- alert KQL in the emulator's workspace --------------------------------------------------------
Row = dict[str, Any]


def job_row(
    now: datetime, vm: str, operation: str, status: str, ended_ago: timedelta, error: str = ""
) -> Row:
    vm_id = f"{VM_GROUP_ID}/providers/microsoft.compute/virtualmachines/{vm}"
    job = f"{vm}-{operation}-{status}-{int(ended_ago.total_seconds())}".lower()
    ended = now - ended_ago
    return {
        "TimeGenerated": iso(max(ended + timedelta(minutes=1), now - timedelta(hours=1))),
        "RecordId": job,
        "JobId": job,
        "Operation": operation,
        "Status": status,
        "ErrorCode": error,
        "ErrorMessage": "",
        "Recommendation": "",
        "VmId": vm_id,
        "VmName": vm,
        "VaultId": f"/subscriptions/{SUBSCRIPTION}/resourcegroups/rg-backup/providers/"
        "microsoft.recoveryservices/vaults/rsv-weu",
        "SubscriptionId": SUBSCRIPTION,
        "Region": "westeurope",
        "StartTime": iso(ended - timedelta(minutes=20)),
        "EndTime": iso(ended),
        "DurationSeconds": 1200.0,
        "TriggeredBy": "Automation",
        "AutomationRunId": "run-1",
        "Attempt": 1,
    }


def sweep_run_row(now: datetime, ago: timedelta) -> Row:
    run = f"run-{int(ago.total_seconds())}"
    return {
        "TimeGenerated": iso(now - ago),
        "RecordId": f"{run}:sweep_run",
        "RunId": run,
        "Source": "Timer",
        "Action": "sweep_run",
        "Result": "completed",
        "Reason": "",
        "VmId": "",
        "VaultId": "",
        "JobId": "",
        "ErrorCode": "",
        "DryRun": False,
    }


def sweep_decision_row(now: datetime, vm: str, ago: timedelta, result: str, reason: str) -> Row:
    """The sweep's decision about one VM stuck in initial-backup-pending (one per VM per run)."""
    run = f"run-{int(ago.total_seconds())}"
    return {
        **sweep_run_row(now, ago),
        "RecordId": f"{run}:{vm}:trigger_backup",
        "Action": "trigger_backup",
        "Result": result,
        "Reason": reason,
        "VmId": f"{VM_GROUP_ID}/providers/microsoft.compute/virtualmachines/{vm}",
    }


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


FAILED_AGENT = "UserErrorGuestAgentStatusUnavailable"
# rule name -> case -> (job rows, automation rows) builders and what the rule should make of them.
ALERT_CASES: dict[str, dict[str, Any]] = {
    "backupwarden-backup-failed": {
        "failure": (
            lambda now: [
                job_row(now, "vm-a", "Backup", "Failed", timedelta(minutes=3), FAILED_AGENT),
                job_row(now, "vm-b", "Backup", "Completed", timedelta(minutes=4)),
            ],
            lambda now: [],
        ),
        "success": (
            lambda now: [job_row(now, "vm-b", "Backup", "Completed", timedelta(minutes=4))],
            lambda now: [],
        ),
        "rows": {"failure": [("vm-a", FAILED_AGENT)], "success": []},
        "fired": {"failure": [["vm-a", FAILED_AGENT, "vm-a-backup-failed-180"]], "success": []},
    },
    "backupwarden-still-unprotected": {
        "failure": (
            lambda now: [
                job_row(now, "vm-c", "ConfigureBackup", "Completed", timedelta(hours=30)),
                job_row(now, "vm-c", "Backup", "Failed", timedelta(hours=20), FAILED_AGENT),
            ],
            lambda now: [
                sweep_decision_row(now, "vm-c", timedelta(hours=29), "triggered", "initial backup pending"),
                sweep_decision_row(now, "vm-c", timedelta(minutes=10), "skipped", "daily budget spent"),
            ],
        ),
        "success": (
            lambda now: [
                job_row(now, "vm-c", "ConfigureBackup", "Completed", timedelta(hours=30)),
                job_row(now, "vm-c", "Backup", "Completed", timedelta(hours=20)),
            ],
            lambda now: [
                sweep_decision_row(now, "vm-c", timedelta(hours=29), "triggered", "initial backup pending"),
                sweep_decision_row(
                    now, "vm-c", timedelta(hours=19), "skipped", "not pending: protectionState is Protected"
                ),
            ],
        ),
        "rows": {"failure": [("vm-c", FAILED_AGENT)], "success": []},
        "fired": {"failure": [["vm-c"]], "success": []},
    },
    "backupwarden-automation-silent": {
        # a dead man's switch: no sweep_run in the window is the failure, and the rule fires on no rows
        "failure": (lambda now: [], lambda now: [sweep_run_row(now, timedelta(hours=3))]),
        "success": (lambda now: [], lambda now: [sweep_run_row(now, timedelta(minutes=10))]),
        "rows": {"failure": [], "success": [("", "")]},
        "fired": {"failure": [[]], "success": []},
    },
}


def upload(server: EmulatorServer, table: LogTable, rows: Sequence[Row]) -> None:
    if rows:
        client = LogsIngestionClient(
            endpoint=server.endpoint, credential=StaticToken(), connection_verify=server.ca_bundle
        )
        client.upload(DEMO_DCR_ID, table.stream, list(rows))


@pytest.fixture
def workspace(emulator: Emulator) -> MonitorBackend:
    """The workspace and DCR monitoring.bicep deploys, in the emulator, on a frozen clock."""
    emulator.load_scenario({"clock": {"scale": 0}})
    provision_log_analytics(emulator)
    return emulator.backend(MonitorBackend)


@pytest.mark.parametrize("case", ["failure", "success"])
@pytest.mark.parametrize("rule_name", sorted(ALERT_CASES))
def test_alert_kql_finds_the_seeded_failure_and_nothing_in_a_success(
    rule_name: str, case: str, emulator: Emulator, emulator_server: EmulatorServer, workspace: MonitorBackend
) -> None:
    rule = bicep_alert_rules()[rule_name]
    spec = ALERT_CASES[rule_name]
    now = emulator.now()
    job_rows, action_rows = spec[case]
    upload(emulator_server, JOB_OUTCOMES, job_rows(now))
    upload(emulator_server, AUTOMATION_ACTIONS, action_rows(now))

    logs = LogsQueryClient(
        StaticToken(), endpoint=emulator_server.endpoint, connection_verify=emulator_server.ca_bundle
    )
    result = logs.query_workspace(DEMO_WORKSPACE_ID, rule["query"], timespan=iso_duration(rule["windowSize"]))
    assert isinstance(result, LogsQueryResult)
    table = result.tables[0]
    rows = [dict(zip(table.columns, row, strict=True)) for row in table.rows]
    keys = [(r.get("VmName", ""), r.get("ErrorCode", "")) for r in rows]
    assert keys == spec["rows"][case]

    dimensions = [d["name"] for d in rule["dimensions"]]
    workspace.add_alert_rule(
        {
            "name": rule["name"],
            "workspace": DEMO_WORKSPACE_ID,
            "query": rule["query"],
            "frequency_s": iso_duration(rule["evaluationFrequency"]).total_seconds(),
            "window_s": iso_duration(rule["windowSize"]).total_seconds(),
            "threshold": {"operator": rule["operator"], "value": rule["threshold"]},
            "dimensions": dimensions,
            "severity": rule["severity"],
        }
    )
    fired = [p for p in workspace.evaluate_alerts() if p["data"]["essentials"]["monitorCondition"] == "Fired"]
    fired_dimensions = [
        [
            d["value"].rsplit("/", 1)[-1]
            for d in p["data"]["alertContext"]["condition"]["allOf"][0]["dimensions"]
        ]
        for p in fired
    ]
    assert fired_dimensions == spec["fired"][case]


def test_workbook_queries_are_the_report_kql_and_run_in_the_workspace(
    emulator: Emulator, emulator_server: EmulatorServer, workspace: MonitorBackend
) -> None:
    tree = parse_bicep(WORKBOOK)
    loaded = set(re.findall(r"'file_path': '\.\./\.\./kql/(\w+)\.kql'", str(tree["variables"])))
    assert loaded == {
        "dedupe_job_outcomes",
        "report_failures",
        "report_warnings",
        "report_unprotected",
        "report_time_to_first_rp",
    }
    queries = {q["name"]: bicep_string(q["query"]) for q in BicepEvaluator(WORKBOOK, {}).variable("queries")}
    assert list(queries) == [
        "outcomes-over-time",
        "failures-by-error-code",
        "vms-with-warnings",
        "vms-without-recovery-point",
        "time-to-first-recovery-point",
    ]
    now = emulator.now()
    upload(
        emulator_server,
        JOB_OUTCOMES,
        [
            job_row(now, "vm-a", "ConfigureBackup", "Completed", timedelta(hours=5)),
            job_row(now, "vm-a", "Backup", "Completed", timedelta(hours=4)),
            job_row(now, "vm-b", "Backup", "Failed", timedelta(hours=2), FAILED_AGENT),
        ],
    )
    logs = LogsQueryClient(
        StaticToken(), endpoint=emulator_server.endpoint, connection_verify=emulator_server.ca_bundle
    )
    results: dict[str, LogsQueryResult] = {}
    for name, query in queries.items():
        result = logs.query_workspace(DEMO_WORKSPACE_ID, query, timespan=timedelta(days=1))
        assert isinstance(result, LogsQueryResult), f"{name}: {result}"
        results[name] = result
    over_time = [
        dict(zip(t.columns, row, strict=True)) for t in results["outcomes-over-time"].tables for row in t.rows
    ]
    assert sorted((r["Status"], r["Jobs"]) for r in over_time) == [
        ("Completed", 1),
        ("Completed", 1),
        ("Failed", 1),
    ]
    failures = results["failures-by-error-code"].tables[0]
    assert [row[failures.columns.index("ErrorCode")] for row in failures.rows] == [FAILED_AGENT]
    first = results["time-to-first-recovery-point"].tables[0]
    assert [row[first.columns.index("SecondsToFirstRecoveryPoint")] for row in first.rows] == [3600]


# --- the Event Grid filter -----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class EventFilter:
    """An event subscription's filter, as Event Grid applies it (string comparisons case-insensitive)."""

    included_event_types: tuple[str, ...] | None
    string_in: tuple[tuple[str, tuple[str, ...]], ...]

    @classmethod
    def from_bicep(cls, evaluated: Mapping[str, Any]) -> EventFilter:
        supported = {"includedEventTypes", "advancedFilters"}
        assert set(evaluated) <= supported, (
            f"filter keys this evaluator does not know: {set(evaluated) - supported}"
        )
        filters = []
        for advanced in evaluated.get("advancedFilters", []):
            assert advanced["operatorType"] == "StringIn", f"not evaluated here: {advanced['operatorType']}"
            filters.append((advanced["key"], tuple(advanced["values"])))
        types = evaluated.get("includedEventTypes")
        return cls(tuple(types) if types is not None else None, tuple(filters))

    def keeps(self, event: Mapping[str, Any]) -> bool:
        event_type = str(event.get("eventType", "")).lower()
        if self.included_event_types is not None and event_type not in {
            t.lower() for t in self.included_event_types
        }:
            return False
        return all(self._string_in(event, key, values) for key, values in self.string_in)

    @staticmethod
    def _string_in(event: Mapping[str, Any], key: str, values: tuple[str, ...]) -> bool:
        value: Any = event
        for part in key.split("."):
            if not isinstance(value, Mapping) or part not in value:
                return False
            value = value[part]
        return isinstance(value, str) and value.lower() in {v.lower() for v in values}


def vm_write_filter() -> EventFilter:
    tree = parse_bicep(EVENTS)
    subscriptions = resources_of_type(tree, "Microsoft.EventGrid/systemTopics/eventSubscriptions").values()
    assert {config["properties"] for config in subscriptions} == {"eventSubscription"}
    properties = tree["variables"]["eventSubscription"]["value"]
    assert properties["deliveryWithResourceIdentity"]["destination"]["endpointType"] == "StorageQueue"
    assert properties["retryPolicy"] == {"maxDeliveryAttempts": 30, "eventTimeToLiveInMinutes": 1440}
    dead_letter = properties["deadLetterWithResourceIdentity"]["deadLetterDestination"]
    assert dead_letter["endpointType"] == "StorageBlob"
    topic = resources_of_type(tree, "Microsoft.EventGrid/systemTopics")["newTopic"]
    assert topic["properties"]["topicType"] == "Microsoft.Resources.Subscriptions"
    return EventFilter.from_bicep(BicepEvaluator(EVENTS, {}).evaluate(properties["filter"]))


@pytest.fixture
def vm_events(emulator: Emulator) -> dict[str, Mapping[str, Any]]:
    """A VM created, an extension written on it, the VM deleted: events as the system topic sends them."""
    grid = emulator.backend(EventGridBackend)
    grid.configure({"schema": "eventgrid"})
    compute = emulator.backend(ComputeBackend)
    compute.create_vm(SUBSCRIPTION, "rg-app", "web-01", "westeurope")
    written = next(e for e in grid.events() if e["data"]["operationName"].endswith("virtualMachines/write"))
    extension = json.loads(json.dumps(written))
    extension_id = f"{written['data']['resourceUri']}/extensions/VMSnapshot"
    extension["id"] = "0f1e2d3c-4b5a-4987-8654-3210fedcba98"
    extension["subject"] = extension["data"]["resourceUri"] = extension_id
    extension["data"]["operationName"] = "Microsoft.Compute/virtualMachines/extensions/write"
    before = len(grid.events())
    compute.delete_vm(written["data"]["resourceUri"])
    deleted = grid.events()[before]
    return {"vm write": written, "extension write": extension, "vm delete": deleted}


def test_event_filter_keeps_a_vm_write_and_drops_an_extension_write(
    vm_events: dict[str, Mapping[str, Any]],
) -> None:
    event_filter = vm_write_filter()
    kept = {name for name, event in vm_events.items() if event_filter.keeps(event)}
    assert kept == {"vm write"}
    assert isinstance(read_vm_write(dict(vm_events["vm write"])), VmWritten)
    assert vm_events["extension write"]["subject"].startswith(vm_events["vm write"]["subject"])


def test_event_filter_evaluator_is_case_insensitive_and_needs_every_filter() -> None:
    event_filter = EventFilter(
        ("Microsoft.Resources.ResourceWriteSuccess",), (("data.operationName", ("A/write",)),)
    )
    assert event_filter.keeps(
        {"eventType": "microsoft.resources.resourcewritesuccess", "data": {"operationName": "a/WRITE"}}
    )
    assert not event_filter.keeps({"eventType": "Microsoft.Resources.ResourceWriteSuccess", "data": {}})
    assert not event_filter.keeps(
        {"eventType": "Microsoft.Resources.ResourceWriteFailure", "data": {"operationName": "A/write"}}
    )


# --- roles ---------------------------------------------------------------------------------------
def role_name_of(variable: str) -> str:
    """`backupOperator` -> "Backup Operator" (the role a `…RoleId` variable names)."""
    return " ".join(word.capitalize() for word in re.findall(r"[a-z]+|[A-Z][a-z]*", variable))


def role_variables() -> list[tuple[Path, str, str]]:
    found = []
    for path in bicep_files():
        for line in path.read_text().splitlines():
            match = ROLE_VARIABLE.match(line.strip())
            if match:
                found.append((path, role_name_of(match["name"]), match["id"]))
    return found


def test_every_role_id_is_the_documented_id_of_the_role_its_variable_names() -> None:
    found = role_variables()
    assert found, "no role id variables found"
    wrong = [(p.name, role, guid) for p, role, guid in found if DOCUMENTED_ROLE_IDS.get(role) != guid.lower()]
    assert wrong == []
    assert {role for _, role, _ in found} == set(DOCUMENTED_ROLE_IDS), "a documented role is no longer used"


def test_no_guid_is_written_anywhere_but_in_a_named_role_variable() -> None:
    for path in bicep_files():
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if re.search(GUID, line):
                assert ROLE_VARIABLE.match(line.strip()), (
                    f"{path.name}:{number}: a GUID outside a role variable"
                )


def test_role_name_of_a_variable() -> None:
    assert role_name_of("storageBlobDataOwner") == "Storage Blob Data Owner"
    assert role_name_of("reader") == "Reader"


def role_assignments() -> Iterator[tuple[Path, str, Mapping[str, Any]]]:
    for path in bicep_files():
        for name, config in resources_of_type(
            parse_bicep(path), "Microsoft.Authorization/roleAssignments"
        ).items():
            yield path, name, config


def expression(node: Any) -> str:
    """A readable form of a pycep expression, for comparing two of them."""
    if is_node(node, "operator"):
        operator = node["operator"]
        if operator["type"] in ("property_accessor", "nested_resource_accessor"):
            sep = "." if operator["type"] == "property_accessor" else "::"
            operands = operator["operands"]
            return f"{expression(operands['operand_1'])}{sep}{expression(operands['operand_2'])}"
    if is_node(node, "function"):
        function = node["function"]
        suffix = f".{function['property_name']}" if function.get("property_name") else ""
        return f"{function['type']}(){suffix}"
    return str(node)


def test_every_role_assignment_is_named_guid_of_scope_principal_and_role() -> None:
    assignments = list(role_assignments())
    assert len(assignments) >= 8
    for path, name, config in assignments:
        where = f"{path.name}:{name}"
        guid = config["name"]["function"]
        assert guid["type"] == "guid", where
        scope_part, principal_part, role_part = (
            expression(guid["parameters"][key]) for key in ("base_string", "extra_string_1", "extra_string_2")
        )
        properties = config["properties"]
        assert principal_part == expression(properties["principalId"]), where
        deployer = properties["principalId"] == "deployerPrincipalId"  # rbac.bicep: the deploying user
        expected_type = "deployerPrincipalType" if deployer else "ServicePrincipal"
        assert properties["principalType"] == expected_type, where
        role = properties["roleDefinitionId"]
        variables = parse_bicep(path).get("variables", {})
        if isinstance(role, str) and role in variables and role_part != role:
            role = variables[role]["value"]  # e.g. backupOperatorRoleDefinitionId -> its role id
        if is_node(role, "function") and role["function"]["type"] == "subscription_resource_id":
            assert role_part == role["function"]["parameters"]["resource_name_1"], where
            assert role_part.endswith("RoleId"), where
        else:
            assert role_part == expression(role), where
        target = parse_bicep(path)["globals"]["scope"]["value"]
        expected_scope = (
            f"{expression(config['scope'])}.id" if "scope" in config else f"{target.lower()}().id"
        )
        expected_scope = expected_scope.replace("resourcegroup().id", "resource_group().id")
        assert scope_part == expected_scope, where


def test_the_custom_vm_role_can_only_read_and_write_vms() -> None:
    (role,) = resources_of_type(parse_bicep(SCOPE), "Microsoft.Authorization/roleDefinitions").values()
    (permissions,) = role["properties"]["permissions"]
    assert sorted(permissions["actions"]) == [
        "Microsoft.Compute/virtualMachines/read",
        "Microsoft.Compute/virtualMachines/write",
    ]
    assert permissions["notActions"] == [] and "dataActions" not in permissions


# --- azd -----------------------------------------------------------------------------------------
def test_azure_yaml_deploys_this_project_to_the_tagged_function_app() -> None:
    project = yaml.safe_load((ROOT / "azure.yaml").read_text())
    ((service_name, service),) = project["services"].items()
    assert service == {"project": ".", "language": "python", "host": "function"}
    assert (project["infra"]["path"], project["infra"]["module"]) == ("infra", "main")
    app = module_evaluator(main_evaluator(AZD_ENVIRONMENT), "functionApp")
    (site,) = resources_of_type(app.tree, "Microsoft.Web/sites").values()
    assert app.evaluate(site["tags"])["azd-service-name"] == service_name


# --- Azure Backup's built-in alerts routed to the webhook, and the worker's telemetry (issue 14) ----------
BACKUP_ALERT_ROUTING = INFRA / "app" / "backup-alert-routing.bicep"


def backup_alert_routing_rule(environment: Mapping[str, str]) -> tuple[BicepEvaluator, Mapping[str, Any]]:
    routing = module_evaluator(main_evaluator(environment), "backupAlertRouting")
    (rule,) = resources_of_type(routing.tree, "Microsoft.AlertsManagement/actionRules").values()
    return routing, rule


def test_the_routing_rule_adds_the_webhooks_action_group_to_azure_backup_alerts() -> None:
    routing, rule = backup_alert_routing_rule(AZD_ENVIRONMENT)
    assert parse_bicep(BACKUP_ALERT_ROUTING)["resources"]["backupAlertRouting"]["api_version"] == "2021-08-08"
    properties = routing.evaluate(rule["properties"])
    assert (routing.evaluate(rule["location"]), properties["enabled"]) == ("Global", True)
    assert properties["conditions"] == [
        {"field": "MonitorService", "operator": "Equals", "values": ["Azure Backup"]},
        {
            "field": "TargetResourceType",
            "operator": "Equals",
            "values": ["microsoft.recoveryservices/vaults"],
        },
    ]
    # the action group of alerts.bicep (the one whose webhook receiver is alert_webhook): its output's sample
    assert "ACTION_GROUP_RESOURCE_ID" in parse_bicep(ALERTS)["outputs"]
    action_group_id = SAMPLE_OUTPUTS["alerts.outputs.ACTION_GROUP_RESOURCE_ID"]
    assert properties["actions"] == [{"actionType": "AddActionGroups", "actionGroupIds": [action_group_id]}]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_routing_rule_covers_every_subscription_in_scope(variant: str) -> None:
    environment = VARIANTS[variant]
    routing, rule = backup_alert_routing_rule(environment)
    in_scope = main_evaluator(environment).variable("subscriptionsInScope").split(",")
    assert routing.evaluate(rule["properties"])["scopes"] == [f"/subscriptions/{sid}" for sid in in_scope]


def test_the_worker_exports_the_logs_with_opentelemetry() -> None:
    """host.json's telemetry mode and the worker's setting together (docs/deploy.md, "Telemetry")."""
    assert json.loads((ROOT / "host.json").read_text())["telemetryMode"] == "OpenTelemetry"
    deployed = deployed_app_settings(AZD_ENVIRONMENT)
    assert deployed["PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"] == "true"
    assert deployed["APPLICATIONINSIGHTS_CONNECTION_STRING"]
    assert re.search(r"^azure-monitor-opentelemetry[>=]", (ROOT / "requirements.txt").read_text(), re.M)
