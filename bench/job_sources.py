"""Requests one outcomes run spends finding finished jobs: Resource Graph versus vault by vault.

`python -m bench.job_sources [--subscriptions N] [--vaults-per-subscription M] [--vms-per-vault K]`
builds a generated estate in the emulator, then finds the jobs that finished in the last day both
ways through the real SDK clients, counting the emulator's requests for each. Its last stdout line
is one JSON object.
"""

from __future__ import annotations

import argparse
import json
from datetime import timedelta

from backupwarden.adapters.azure.clients import AzureClients
from backupwarden.adapters.azure.recovery_services import RecoveryServices, VaultRef
from backupwarden.adapters.azure.resource_graph import query_rows
from backupwarden.flows.outcomes.collector import FINISHED_JOBS_QUERY
from backupwarden.settings import Settings
from emulator import Emulator, EmulatorServer


def _settings(server: EmulatorServer) -> Settings:
    return Settings.from_env(
        {
            "BACKUPWARDEN_ARM_ENDPOINT": server.endpoint,
            "BACKUPWARDEN_CREDENTIAL": "static-token",
            "BACKUPWARDEN_STATIC_TOKEN": "bench",
            "BACKUPWARDEN_CA_BUNDLE": server.ca_bundle,
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscriptions", type=int, default=3)
    parser.add_argument("--vaults-per-subscription", type=int, default=10)
    parser.add_argument("--vms-per-vault", type=int, default=20)
    args = parser.parse_args()
    emulator = Emulator(time_scale=0)
    emulator.load_scenario(
        {
            "generate": {
                "subscriptions": args.subscriptions,
                "vaults_per_subscription": args.vaults_per_subscription,
                "vms_per_vault": args.vms_per_vault,
                "stuck_percent": 10,
            }
        }
    )
    emulator.throttle.enabled = False
    with EmulatorServer(emulator) as server, AzureClients(_settings(server)) as clients:
        subscriptions = sorted(emulator.estate.subscriptions)
        since = emulator.now() - timedelta(days=1)
        emulator.requests.clear()
        query = FINISHED_JOBS_QUERY.format(since=since.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        graph_jobs = sum(1 for _ in query_rows(clients.resource_graph(), query, subscriptions))
        graph_requests = emulator.requests.summary()["total"]
        emulator.requests.clear()
        recovery = RecoveryServices(clients.backup)
        odata = "%Y-%m-%d %I:%M:%S %p"
        window = f"startTime eq '{since:{odata}}' and endTime eq '{emulator.now():{odata}}'"
        vault_jobs = 0
        for subscription in subscriptions:
            for vault in clients.recovery_services(subscription).vaults.list_by_subscription_id():
                jobs = recovery.jobs(VaultRef.parse(str(vault.id)), window)
                vault_jobs += sum(1 for job in jobs if job["properties"].get("status") != "InProgress")
        vault_requests = emulator.requests.summary()["total"]
    vaults = args.subscriptions * args.vaults_per_subscription
    print(f"estate: {args.subscriptions} subscriptions, {vaults} vaults, {vaults * args.vms_per_vault} VMs")
    print(f"{'source':<16}{'requests':>10}{'jobs found':>12}")
    print(f"{'resource graph':<16}{graph_requests:>10}{graph_jobs:>12}")
    print(f"{'vault by vault':<16}{vault_requests:>10}{vault_jobs:>12}")
    print(
        json.dumps(
            {
                "vaults": vaults,
                "graph_requests": graph_requests,
                "vault_requests": vault_requests,
                "graph_jobs": graph_jobs,
                "vault_jobs": vault_jobs,
            }
        )
    )


if __name__ == "__main__":
    main()
