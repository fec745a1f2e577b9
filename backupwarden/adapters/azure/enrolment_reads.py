"""Reads pre-flight needs of one VM before enrolling it: its VM agent (instance view) and the type of the
backup policy chosen for it.

- Instance view: GET .../virtualMachines/{vm}/instanceView (compute REST spec,
  VirtualMachines_InstanceView): `statuses[].code` `PowerState/<state>`, `vmAgent.statuses[0].displayStatus`
  (`Ready` or `Not Ready`).
- Policy: GET .../vaults/{vault}/backupPolicies/{policy} (Recovery Services backup REST spec,
  ProtectionPolicies_Get): `properties.policyType` of an AzureIaaSVMProtectionPolicy is `V1` (Standard)
  or `V2` (Enhanced); absent on policies written before Enhanced existed, which are Standard.
"""

from __future__ import annotations

from collections.abc import Callable

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.recoveryservicesbackup import RecoveryServicesBackupClient

from backupwarden.adapters.azure.errors import AzureCallError
from backupwarden.adapters.azure.recovery_services import VaultRef
from backupwarden.domain.preflight import AgentFacts, PolicyType

POWER_STATE_PREFIX = "PowerState/"


class EnrolmentReads:
    def __init__(
        self,
        compute_for: Callable[[str], ComputeManagementClient],
        backup_for: Callable[[str], RecoveryServicesBackupClient],
    ) -> None:
        self._compute_for = compute_for
        self._backup_for = backup_for

    def agent(self, subscription_id: str, resource_group: str, vm_name: str) -> AgentFacts:
        try:
            view = self._compute_for(subscription_id).virtual_machines.instance_view(resource_group, vm_name)
        except AzureError as exc:
            raise AzureCallError.from_sdk("read VM instance view", exc) from exc
        power_state = next(
            (
                str(status.code).removeprefix(POWER_STATE_PREFIX)
                for status in view.statuses or ()
                if str(status.code or "").startswith(POWER_STATE_PREFIX)
            ),
            "",
        )
        agent_statuses = (view.vm_agent.statuses if view.vm_agent else None) or ()
        agent_status = str(agent_statuses[0].display_status) if agent_statuses else None
        return AgentFacts(power_state=power_state, agent_status=agent_status)

    def policy_type(self, vault: VaultRef, policy_name: str) -> PolicyType | None:
        """The policy's type; None when the vault has no policy of that name."""
        client = self._backup_for(vault.subscription_id)
        try:
            policy = client.protection_policies.get(vault.name, vault.resource_group, policy_name)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise AzureCallError.from_sdk("read backup policy", exc) from exc
        raw = str(getattr(policy.properties, "policy_type", None) or "")
        return PolicyType.ENHANCED if raw.upper() == PolicyType.ENHANCED.value else PolicyType.STANDARD
