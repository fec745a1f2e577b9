"""ProtectVm end to end: the app's SDK clients against the emulator (demo estate), the ledger on Azurite.

New VMs are created through the emulator's compute backend, which publishes their Event Grid events;
work items are made from those events. Writes are counted in the emulator's request log by route,
so "exactly one protection PUT and one backup POST per VM" is what the service actually received.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.recoveryservicesbackup.models import (
    AzureIaaSComputeVMProtectedItem,
    ProtectedItemResource,
)

from backupwarden.adapters.azure.protection import item_names
from backupwarden.adapters.storage.ledger import LedgerStatus
from backupwarden.domain.records import Outcome, Result
from backupwarden.domain.vm_events import VmWritten, read_vm_write
from backupwarden.flows.backup_now import LEDGER_ACTION as BACKUP
from backupwarden.flows.new_vm.messages import NewVmWorkItem
from backupwarden.flows.new_vm.worker import LEDGER_ACTION as PROTECT
from backupwarden.flows.new_vm.worker import TransientFailure
from emulator.core.realism import Fault
from emulator.recoveryservices.urls import FABRIC
from tests.new_vm_fixtures import (
    BACKUP_POST,
    NEU_VAULT,
    PROD,
    PROTECT_PUT,
    WEU_VAULT,
    NewVmBench,
    vm_id_of,
)

Bench = NewVmBench
REFRESH_RESULT = f"{FABRIC}/operationResults/{{operationId}}"


def items_of_events(bench: Bench, vm_id: str) -> list[NewVmWorkItem]:
    """One work item per published event of the VM, in publishing order."""
    items = []
    for event in bench.events_for(vm_id):
        parsed = read_vm_write(event)
        assert isinstance(parsed, VmWritten)
        items.append(NewVmWorkItem.from_event(parsed))
    return items


def assert_one_put_and_one_backup(bench: Bench, vm_id: str) -> None:
    """The service accepted exactly one protection PUT and one "Backup now" for the VM."""
    puts = [e.status for e in bench.calls(PROTECT_PUT, vm_id)]
    posts = [e.status for e in bench.calls(BACKUP_POST, vm_id)]
    assert puts == [202], f"protection PUTs: {puts}"
    assert posts == [202], f"backup POSTs: {posts}"


def results(outcomes: list[Outcome]) -> Counter[Result]:
    return Counter(outcome.result for outcome in outcomes)


# --- one branch each ----------------------------------------------------------------------------
def test_a_new_vm_is_protected_and_its_initial_backup_starts(new_vm_bench: Bench) -> None:
    new_vm_bench.service_takes_its_time()
    vm = new_vm_bench.create_vm("web-05", tags={"env": "prod", "backupwarden:policy": "EnhancedPolicy"})

    outcome = new_vm_bench.worker().handle(new_vm_bench.work_item(vm))

    assert outcome.result is Result.PROTECTED, outcome
    assert (outcome.vm_id, outcome.vault_id, outcome.action) == (vm, WEU_VAULT.lower(), "enable_protection")
    assert "vault rsv-prod-weu, policy EnhancedPolicy (the only vault in westeurope)" in outcome.reason
    item = new_vm_bench.protected_item(vm)["properties"]
    assert (item["protectionState"], item["policyName"]) == ("IRPending", "EnhancedPolicy")
    assert item["sourceResourceId"].lower() == vm
    assert outcome.job_id is not None
    job = new_vm_bench.job(outcome.job_id)["properties"]
    assert (job["operation"], job["status"], job["entityFriendlyName"]) == ("Backup", "InProgress", "web-05")
    protect = new_vm_bench.ledger_record(vm, PROTECT)
    backup = new_vm_bench.ledger_record(vm, BACKUP)
    assert protect is not None and backup is not None
    assert (protect.status, backup.status) == (LedgerStatus.COMPLETED, LedgerStatus.COMPLETED)
    assert backup.job_id == outcome.job_id
    configure = new_vm_bench.job(protect.job_id)["properties"]
    assert (configure["operation"], configure["status"]) == ("ConfigureBackup", "Completed")
    assert protect.job_id in outcome.reason
    assert_one_put_and_one_backup(new_vm_bench, vm)
    refresh_polls = [e.status for e in new_vm_bench.requests() if e.route == REFRESH_RESULT]
    assert refresh_polls[-1] == 204 and set(refresh_polls[:-1]) <= {202}, (
        "refreshContainers polled until done"
    )


def test_vault_rules_from_settings_choose_the_vault_and_policy(new_vm_bench: Bench) -> None:
    vm = new_vm_bench.create_vm("web-06")
    rules = '[{"vault": "rsv-prod-weu", "policy": "EnhancedPolicy", "location": "westeurope"}]'

    outcome = new_vm_bench.worker(BACKUPWARDEN_VAULT_RULES=rules).handle(new_vm_bench.work_item(vm))

    assert outcome.result is Result.PROTECTED, outcome
    assert "policy EnhancedPolicy (mapping rule 1 names vault rsv-prod-weu)" in outcome.reason
    assert new_vm_bench.protected_item(vm)["properties"]["policyName"] == "EnhancedPolicy"


def test_a_vm_deleted_before_the_worker_runs_is_gone(new_vm_bench: Bench) -> None:
    vm = new_vm_bench.create_vm("web-07")
    item = new_vm_bench.work_item(vm)
    new_vm_bench.compute.delete_vm(vm)

    outcome = new_vm_bench.worker().handle(item)

    assert (outcome.result, outcome.reason) == (Result.VM_GONE, "the VM no longer exists")
    assert new_vm_bench.requests() and not [e for e in new_vm_bench.requests() if e.kind == "write"]


def test_a_provisioning_vm_is_requeued_then_protected_once_it_succeeds(new_vm_bench: Bench) -> None:
    vm = new_vm_bench.create_vm("web-08", provisioning_state="Creating")
    item = new_vm_bench.work_item(vm)

    first = new_vm_bench.worker().handle(item)

    assert (first.result, first.reason) == (Result.REQUEUED, "provisioning state is Creating: checking later")
    assert not [e for e in new_vm_bench.requests() if e.kind == "write"], "not even backupStatus yet"
    new_vm_bench.compute.update_vm(vm, provisioning_state="Succeeded")
    second = new_vm_bench.worker().handle(item.waited_once_more())
    assert second.result is Result.PROTECTED, second
    assert_one_put_and_one_backup(new_vm_bench, vm)


def test_a_vm_provisioning_for_too_long_is_given_up(new_vm_bench: Bench) -> None:
    vm = new_vm_bench.create_vm("web-09", provisioning_state="Creating")
    item = new_vm_bench.work_item(vm)
    worker = new_vm_bench.worker(BACKUPWARDEN_MAX_PROVISIONING_WAITS="2")
    seen = []
    while True:  # what the queue does: requeue while the worker says so
        outcome = worker.handle(item)
        seen.append(outcome.result)
        if outcome.result is not Result.REQUEUED:
            break
        item = item.waited_once_more()
    assert seen == [Result.REQUEUED, Result.REQUEUED, Result.FAILED]
    assert outcome.reason == "still Creating after 2 checks: given up"
    assert not new_vm_bench.changing_writes()


def test_a_vm_already_protected_is_left_alone(new_vm_bench: Bench) -> None:
    vm = vm_id_of(PROD, "rg-app", "app-01").lower()  # the demo's Protected VM
    new_vm_bench.compute.update_vm(vm, tags={"env": "prod", "owner": "team-a"})  # its write event

    outcome = new_vm_bench.worker().handle(new_vm_bench.work_item(vm))

    assert outcome.result is Result.ALREADY_PROTECTED, outcome
    assert outcome.reason == f"already protected by {WEU_VAULT}"
    assert outcome.vault_id == WEU_VAULT
    assert not new_vm_bench.changing_writes()


def test_an_opted_out_vm_is_skipped(new_vm_bench: Bench) -> None:
    vm = new_vm_bench.create_vm("web-10", tags={"Backupwarden:Skip": "true"})

    outcome = new_vm_bench.worker().handle(new_vm_bench.work_item(vm))

    assert (outcome.result, outcome.reason) == (Result.SKIPPED, "opted out by tag backupwarden:skip")
    assert not new_vm_bench.changing_writes()


@pytest.mark.parametrize(
    ("location", "tags", "reason"),
    [
        ("swedencentral", {}, f"no vault in region swedencentral of subscription {PROD}"),
        (
            "westeurope",
            {"backupwarden:vault": "rsv-prod-neu"},
            "tag backupwarden:vault names vault rsv-prod-neu in northeurope, but the VM is in westeurope",
        ),
        (
            "westeurope",
            {"backupwarden:vault": "rsv-dev-eus"},  # a vault of the other subscription
            f"tag backupwarden:vault names vault rsv-dev-eus, which is not in subscription {PROD}",
        ),
    ],
    ids=["region without vault", "tag naming a vault in another region", "tag naming another subscription's"],
)
def test_no_vault_is_an_escalation_with_the_reason(
    new_vm_bench: Bench, location: str, tags: dict[str, str], reason: str
) -> None:
    vm = new_vm_bench.create_vm("web-11", location=location, tags=tags)

    outcome = new_vm_bench.worker().handle(new_vm_bench.work_item(vm))

    assert (outcome.result, outcome.reason, outcome.vault_id) == (Result.NO_VAULT, reason, "")
    assert not new_vm_bench.changing_writes()
    assert new_vm_bench.ledger_record(vm, PROTECT) is None


def test_dry_run_decides_but_changes_nothing(new_vm_bench: Bench) -> None:
    vm = new_vm_bench.create_vm("web-12")

    outcome = new_vm_bench.worker(dry_run=True).handle(new_vm_bench.work_item(vm))

    assert outcome.result is Result.DRY_RUN, outcome
    assert (
        outcome.reason
        == "would protect in vault rsv-prod-weu, policy DefaultPolicy (the only vault in westeurope)"
    )
    writes = [e.path for e in new_vm_bench.requests() if e.kind == "write"]
    assert [path.rsplit("/", 1)[-1] for path in writes] == ["backupStatus"], "only the backupStatus query"
    assert new_vm_bench.ledger_record(vm, PROTECT) is None
    with pytest.raises(ResourceNotFoundError):
        new_vm_bench.protected_item(vm)


def test_a_policy_the_vault_lacks_fails_with_the_service_error(new_vm_bench: Bench) -> None:
    vm = new_vm_bench.create_vm("web-13", tags={"backupwarden:policy": "NoSuchPolicy"})

    outcome = new_vm_bench.worker().handle(new_vm_bench.work_item(vm))

    assert (outcome.result, outcome.reason) == (Result.FAILED, "enable protection failed")
    assert outcome.error_code == "BMSUserErrorPolicyNotFound"
    assert outcome.error_message is not None and "NoSuchPolicy" in outcome.error_message
    record = new_vm_bench.ledger_record(vm, PROTECT)
    assert record is not None and (record.status, record.reason) == (
        LedgerStatus.FAILED,
        "BMSUserErrorPolicyNotFound",
    )
    assert not new_vm_bench.calls(BACKUP_POST, vm)


# --- idempotency ---------------------------------------------------------------------------------
def test_the_duplicate_create_pair_protects_once(new_vm_bench: Bench) -> None:
    vm = new_vm_bench.create_vm("web-14")
    items = items_of_events(new_vm_bench, vm)
    assert len(items) == 2 and items[0].correlation_id == items[1].correlation_id

    outcomes = [new_vm_bench.worker().handle(item) for item in items]

    assert [o.result for o in outcomes] == [Result.PROTECTED, Result.ALREADY_PROTECTED]
    assert outcomes[1].reason == (
        "protected earlier today by backupwarden; "
        "initial backup: already handled today by the ledger (completed)"
    )
    assert_one_put_and_one_backup(new_vm_bench, vm)


def test_a_redelivered_work_item_protects_once(new_vm_bench: Bench) -> None:
    vm = new_vm_bench.create_vm("web-15")
    item = new_vm_bench.work_item(vm)

    outcomes = [new_vm_bench.worker().handle(item) for _ in range(3)]

    assert [o.result for o in outcomes] == [Result.PROTECTED] + [Result.ALREADY_PROTECTED] * 2
    assert_one_put_and_one_backup(new_vm_bench, vm)


def test_an_update_event_handled_before_the_create_protects_once(new_vm_bench: Bench) -> None:
    vm = new_vm_bench.create_vm("web-16")
    new_vm_bench.compute.update_vm(vm, tags={"env": "prod"})
    create_pair_and_update = items_of_events(new_vm_bench, vm)
    assert len(create_pair_and_update) == 3
    out_of_order = create_pair_and_update[::-1]

    outcomes = [new_vm_bench.worker().handle(item) for item in out_of_order]

    assert [o.result for o in outcomes] == [Result.PROTECTED] + [Result.ALREADY_PROTECTED] * 2
    assert_one_put_and_one_backup(new_vm_bench, vm)


def test_workers_racing_on_the_same_vm_protect_it_once(new_vm_bench: Bench) -> None:
    new_vm_bench.service_takes_its_time()  # the racers overlap the 45 s of refresh and configuration
    vm = new_vm_bench.create_vm("web-17")
    item = new_vm_bench.work_item(vm)
    workers = [new_vm_bench.worker() for _ in range(4)]
    start = threading.Barrier(len(workers))
    outcomes: list[Outcome] = []
    failures: list[BaseException] = []

    def run(index: int) -> None:
        start.wait()
        try:
            outcomes.append(workers[index].handle(item))
        except BaseException as exc:  # reported below, with the outcomes
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not failures, failures
    assert results(outcomes)[Result.PROTECTED] == 1, outcomes
    # a loser that meets the winner's claim still in flight looks again later (requeued)
    assert set(results(outcomes)) <= {
        Result.PROTECTED,
        Result.REQUEUED,
        Result.SKIPPED,
        Result.ALREADY_PROTECTED,
    }, outcomes
    assert_one_put_and_one_backup(new_vm_bench, vm)


# --- a crash between the PUT and the ledger write ------------------------------------------------
def put_as_a_crashed_worker_did(bench: Bench, vm_id: str) -> None:
    """The protection PUT, sent straight through the SDK: the worker died before writing the ledger."""
    resource_group, name = vm_id.split("/")[4], vm_id.rsplit("/", 1)[-1]
    container, item = item_names(resource_group, name)
    body = ProtectedItemResource(
        properties=AzureIaaSComputeVMProtectedItem(
            source_resource_id=vm_id, policy_id=f"{WEU_VAULT}/backupPolicies/DefaultPolicy"
        )
    )
    bench.backup_client().protected_items.begin_create_or_update(
        "rsv-prod-weu", "rg-backup-weu", "Azure", container, item, body, polling=False
    )


def test_retry_after_a_crash_holding_the_claim_only_takes_the_initial_backup(new_vm_bench: Bench) -> None:
    """The claim was taken and the PUT sent; the ledger was never completed. Once the service reports
    the VM protected, the retry sees the ledger's claim, sends no second PUT and triggers the backup."""
    new_vm_bench.service_takes_its_time()
    vm = new_vm_bench.create_vm("web-18")
    new_vm_bench.ledger().claim(
        vm, PROTECT, new_vm_bench.emulator.now().date(), "crashed-run", max_attempts=3
    )
    put_as_a_crashed_worker_did(new_vm_bench, vm)
    new_vm_bench.emulator.advance(new_vm_bench.emulator.estate.timings.configure_operation_s)

    outcome = new_vm_bench.worker().handle(new_vm_bench.work_item(vm))

    assert outcome.result is Result.PROTECTED, outcome
    assert outcome.reason.startswith("protected earlier today by backupwarden; initial backup: backup job ")
    assert_one_put_and_one_backup(new_vm_bench, vm)
    protect = new_vm_bench.ledger_record(vm, PROTECT)
    assert protect is not None and protect.status is LedgerStatus.IN_PROGRESS, (
        "the crashed claim just expires"
    )


def test_retry_during_the_crashed_runs_configuration_defers_to_its_claim(new_vm_bench: Bench) -> None:
    """Still configuring, the service says NotProtected; the live claim stops a second PUT. This retry
    does not take the backup: a later delivery (or the sweep, after its grace period) does."""
    new_vm_bench.service_takes_its_time()
    vm = new_vm_bench.create_vm("web-19")
    new_vm_bench.emulator.clock.set(new_vm_bench.emulator.now(), scale=0)  # configuration stays pending
    new_vm_bench.ledger().claim(
        vm, PROTECT, new_vm_bench.emulator.now().date(), "crashed-run", max_attempts=3
    )
    put_as_a_crashed_worker_did(new_vm_bench, vm)

    outcome = new_vm_bench.worker().handle(new_vm_bench.work_item(vm))

    assert (outcome.result, outcome.reason) == (
        Result.REQUEUED,
        "another worker is protecting this VM: checking again later",
    )
    assert [e.status for e in new_vm_bench.calls(PROTECT_PUT, vm)] == [202]
    assert not new_vm_bench.calls(BACKUP_POST, vm)


def test_retry_after_a_put_the_ledger_never_saw_reports_already_protected(new_vm_bench: Bench) -> None:
    """No ledger record at all (the PUT went out without a claim, like a protection enabled by hand):
    backupStatus says Protected, so no second PUT; the flow does not take the initial backup of a VM it
    did not protect. That is left to the sweep once the item is past its grace period."""
    new_vm_bench.service_takes_its_time()
    vm = new_vm_bench.create_vm("web-20")
    put_as_a_crashed_worker_did(new_vm_bench, vm)
    new_vm_bench.emulator.advance(new_vm_bench.emulator.estate.timings.configure_operation_s)

    outcome = new_vm_bench.worker().handle(new_vm_bench.work_item(vm))

    assert (outcome.result, outcome.reason) == (Result.ALREADY_PROTECTED, f"already protected by {WEU_VAULT}")
    assert [e.status for e in new_vm_bench.calls(PROTECT_PUT, vm)] == [202]
    assert not new_vm_bench.calls(BACKUP_POST, vm)
    assert new_vm_bench.ledger_record(vm, PROTECT) is None


# --- transient failures ----------------------------------------------------------------------------
def test_a_transient_put_failure_raises_and_leaves_nothing_half_done(new_vm_bench: Bench) -> None:
    vm = new_vm_bench.create_vm("web-21")
    item = new_vm_bench.work_item(vm)
    new_vm_bench.emulator.faults.add(Fault(path_regex=r"/protectedItems/[^/]+$", status=503, method="PUT"))

    with pytest.raises(TransientFailure) as raised:
        new_vm_bench.worker(BACKUPWARDEN_HTTP_RETRY_TOTAL="0").handle(item)

    failed = raised.value.outcome
    assert (failed.result, failed.reason, failed.error_code) == (
        Result.FAILED,
        "enable protection failed",
        "InternalServerError",
    )
    record = new_vm_bench.ledger_record(vm, PROTECT)
    assert record is not None
    assert (record.status, record.attempts, record.reason) == (LedgerStatus.FAILED, 1, "InternalServerError")
    with pytest.raises(ResourceNotFoundError):
        new_vm_bench.protected_item(vm)
    protectable = new_vm_bench.backup_client().backup_protectable_items.list(
        "rsv-prod-weu", "rg-backup-weu", filter="backupManagementType eq 'AzureIaasVM'"
    )
    listed = [str(p.properties.as_dict()["virtualMachineId"]).lower() for p in protectable if p.properties]
    assert vm in listed, "the VM is still just protectable: no configuration under way"
    assert not new_vm_bench.calls(BACKUP_POST, vm)

    new_vm_bench.emulator.faults.clear()  # the queue redelivers the item later
    retried = new_vm_bench.worker().handle(item)

    assert retried.result is Result.PROTECTED, retried
    assert [e.status for e in new_vm_bench.calls(PROTECT_PUT, vm)] == [503, 202]
    assert [e.status for e in new_vm_bench.calls(BACKUP_POST, vm)] == [202]
    record = new_vm_bench.ledger_record(vm, PROTECT)
    assert record is not None and (record.status, record.attempts) == (LedgerStatus.COMPLETED, 2)


def test_a_transient_backup_failure_raises_and_the_retry_takes_the_backup(new_vm_bench: Bench) -> None:
    vm = new_vm_bench.create_vm("web-22")
    item = new_vm_bench.work_item(vm)
    new_vm_bench.emulator.faults.add(
        Fault(path_regex=r"/protectedItems/[^/]+/backup$", status=503, method="POST")
    )

    with pytest.raises(TransientFailure) as raised:
        new_vm_bench.worker(BACKUPWARDEN_HTTP_RETRY_TOTAL="0").handle(item)

    assert raised.value.outcome.error_code == "InternalServerError"
    backup = new_vm_bench.ledger_record(vm, BACKUP)
    assert backup is not None and backup.status is LedgerStatus.FAILED

    new_vm_bench.emulator.faults.clear()
    retried = new_vm_bench.worker().handle(item)

    assert retried.result is Result.PROTECTED and retried.job_id is not None, retried
    assert [e.status for e in new_vm_bench.calls(PROTECT_PUT, vm)] == [202]
    assert [e.status for e in new_vm_bench.calls(BACKUP_POST, vm)] == [503, 202]


def test_the_neu_vault_protects_a_vm_tagged_for_it(new_vm_bench: Bench) -> None:
    vm = new_vm_bench.create_vm(
        "batch-04", location="northeurope", tags={"backupwarden:vault": "rsv-prod-neu"}
    )

    outcome = new_vm_bench.worker().handle(new_vm_bench.work_item(vm))

    assert (outcome.result, outcome.vault_id) == (Result.PROTECTED, NEU_VAULT.lower()), outcome
    assert new_vm_bench.protected_item(vm, NEU_VAULT)["properties"]["protectionState"] == "IRPending"


def test_a_vm_with_mixed_case_names_is_protected(new_vm_bench: Bench) -> None:
    vm = new_vm_bench.create_vm("Web-40", resource_group="RG-Mixed")
    item = new_vm_bench.work_item(vm)
    assert (item.resource_group, item.vm_name) == ("RG-Mixed", "Web-40")

    outcome = new_vm_bench.worker().handle(
        NewVmWorkItem.from_json(item.to_json())
    )  # through the queue's form

    assert outcome.result is Result.PROTECTED, outcome
    assert new_vm_bench.protected_item(vm)["properties"]["friendlyName"] == "Web-40"
