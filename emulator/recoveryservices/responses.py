"""HTTP handlers of Recovery Services: parse the request, ask the backend, render ARM JSON."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from emulator.core.app import Call, Reply
from emulator.estate import AsyncOperation, Vault
from emulator.recoveryservices import shapes
from emulator.recoveryservices.exceptions import InvalidBackupRequest
from emulator.recoveryservices.models import RecoveryServicesBackend


def _backend(call: Call) -> RecoveryServicesBackend:
    return call.backend(RecoveryServicesBackend)


def _vault(call: Call) -> Vault:
    params = call.params
    return _backend(call).vault(params["subscriptionId"], params["resourceGroupName"], params["vaultName"])


def _retry_after(call: Call) -> str:
    """The wait the service asks for (60 s): in real seconds at the clock's scale, unless unscaled."""
    seconds = call.emulator.estate.timings.retry_after_s
    if _backend(call).unscaled_retry_after:
        return str(seconds)
    return str(call.emulator.clock.real_seconds(seconds))


def _link(call: Call, path: str) -> str:
    """An operation URL: signed (t, c, s, h) when `signed_operation_urls` is on, as ARM's are."""
    backend = _backend(call)
    if backend.signed_operation_urls:
        return f"{call.url(path)}?{backend.signer.sign(path, call.api_version, call.emulator.now())}"
    return f"{call.url(path)}?{urlencode({'api-version': call.api_version})}"


def _check_signature(call: Call) -> None:
    """A polled operation URL keeps the signature it was issued with, or carries none."""
    _backend(call).signer.check(call.path, call.query)


def _item_path(call: Call, vault: Vault) -> str:
    return (
        f"{vault.id}/backupFabrics/Azure/protectionContainers/{call.params['containerName']}"
        f"/protectedItems/{call.params['protectedItemName']}"
    )


def _accepted_item_operation(call: Call, vault: Vault, op: AsyncOperation) -> Reply:
    """202 with the headers the service sends for item operations (ConfigureProtection.json)."""
    item_path = _item_path(call, vault)
    return Reply(
        202,
        None,
        {
            "Location": _link(call, f"{item_path}/operationResults/{op.op_id}"),
            "Azure-AsyncOperation": _link(call, f"{item_path}/operationsStatus/{op.op_id}"),
            "Retry-After": _retry_after(call),
        },
    )


def _skip(call: Call) -> int:
    token = call.query.get("$skipToken", call.query.get("$skiptoken", ""))
    if not token:
        return 0
    if not token.isdigit():
        raise InvalidBackupRequest(f"The $skipToken '{token}' is not valid.")
    return int(token)


def _page(call: Call, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One page of a list, with an absolute nextLink carrying $filter and $skipToken."""
    start, size = _skip(call), max(1, _backend(call).page_size)
    body: dict[str, Any] = {"value": rows[start : start + size]}
    if start + size < len(rows):
        query = {"api-version": call.api_version}
        if "$filter" in call.query:
            query["$filter"] = call.query["$filter"]
        query["$skipToken"] = str(start + size)
        body["nextLink"] = f"{call.url(call.path)}?{urlencode(query)}"
    return body


# --- vaults ---------------------------------------------------------------------------------
def list_vaults_in_subscription(call: Call) -> Reply:
    vaults = _backend(call).vaults(call.params["subscriptionId"])
    return Reply(200, {"value": [shapes.vault_resource(vault) for vault in vaults]})


def list_vaults_in_group(call: Call) -> Reply:
    vaults = _backend(call).vaults(call.params["subscriptionId"], call.params["resourceGroupName"])
    return Reply(200, {"value": [shapes.vault_resource(vault) for vault in vaults]})


def get_vault(call: Call) -> Reply:
    return Reply(200, shapes.vault_resource(_vault(call)))


# --- policies -------------------------------------------------------------------------------
def list_policies(call: Call) -> Reply:
    backend = _backend(call)
    policies = backend.policies(_vault(call), call.query.get("$filter"))
    rows = [shapes.policy_resource(policy, backend.items_with_policy(policy)) for policy in policies]
    return Reply(200, {"value": rows})


def get_policy(call: Call) -> Reply:
    backend = _backend(call)
    policy = backend.policy(_vault(call), call.params["policyName"])
    return Reply(200, shapes.policy_resource(policy, backend.items_with_policy(policy)))


# --- discovery ------------------------------------------------------------------------------
def list_protectable_items(call: Call) -> Reply:
    vault = _vault(call)
    vms = _backend(call).protectable_vms(vault, call.query.get("$filter"))
    return Reply(200, {"value": [shapes.protectable_item_resource(vm, vault) for vm in vms]})


def refresh_containers(call: Call) -> Reply:
    vault = _vault(call)
    op = _backend(call).refresh_containers(vault)
    location = _link(call, f"{vault.id}/backupFabrics/Azure/operationResults/{op.op_id}")
    return Reply(202, None, {"Location": location, "Retry-After": _retry_after(call)})


def refresh_containers_result(call: Call) -> Reply:
    _check_signature(call)
    vault = _vault(call)
    op = _backend(call).operation(vault, call.params["operationId"], kind="refreshContainers")
    if op.status == "InProgress":
        location = _link(call, f"{vault.id}/backupFabrics/Azure/operationResults/{op.op_id}")
        return Reply(202, None, {"Location": location, "Retry-After": _retry_after(call)})
    return Reply(204)


# --- protected items ------------------------------------------------------------------------
def put_protected_item(call: Call) -> Reply:
    vault = _vault(call)
    op = _backend(call).enable_protection(
        vault, call.params["containerName"], call.params["protectedItemName"], call.json_object()
    )
    return _accepted_item_operation(call, vault, op)


def get_protected_item(call: Call) -> Reply:
    vault = _vault(call)
    backend = _backend(call)
    item = backend.protected_item(vault, call.params["containerName"], call.params["protectedItemName"])
    return Reply(200, shapes.protected_item_resource(item, vault, backend.now()))


def list_protected_items(call: Call) -> Reply:
    vault = _vault(call)
    backend = _backend(call)
    items = backend.protected_items(vault, call.query.get("$filter"))
    now = backend.now()
    return Reply(200, _page(call, [shapes.protected_item_resource(item, vault, now) for item in items]))


def item_operation_result(call: Call) -> Reply:
    """202 while running; then 200 with the item for a configure operation, 204 otherwise."""
    _check_signature(call)
    vault = _vault(call)
    backend = _backend(call)
    op = backend.operation(vault, call.params["operationId"])
    if op.status == "InProgress":
        return _accepted_item_operation(call, vault, op)
    if op.kind == "configureProtection" and op.status == "Succeeded":
        item = backend.protected_item(vault, call.params["containerName"], call.params["protectedItemName"])
        return Reply(200, shapes.protected_item_resource(item, vault))
    return Reply(204)


def item_operation_status(call: Call) -> Reply:
    _check_signature(call)
    op = _backend(call).operation(_vault(call), call.params["operationId"])
    return Reply(200, shapes.operation_status(op))


def trigger_backup(call: Call) -> Reply:
    vault = _vault(call)
    op = _backend(call).trigger_backup(
        vault, call.params["containerName"], call.params["protectedItemName"], call.json_object()
    )
    return _accepted_item_operation(call, vault, op)


# --- operations and jobs --------------------------------------------------------------------
def get_backup_operation(call: Call) -> Reply:
    op = _backend(call).operation(_vault(call), call.params["operationId"])
    return Reply(200, shapes.operation_status(op))


def list_jobs(call: Call) -> Reply:
    jobs = _backend(call).jobs(_vault(call), call.query.get("$filter"))
    now = call.emulator.now()
    return Reply(200, _page(call, [shapes.job_resource(job, now, listed=True) for job in jobs]))


def get_job(call: Call) -> Reply:
    backend = _backend(call)
    job = backend.job(_vault(call), call.params["jobName"])
    return Reply(200, shapes.job_resource(job, call.emulator.now(), policy_name=backend.policy_name_of(job)))


def backup_status(call: Call) -> Reply:
    body = call.json_object()
    item, vault = _backend(call).backup_status(call.params["subscriptionId"], body)
    return Reply(200, shapes.backup_status(str(body["resourceId"]), item, vault))
