"""Which vault and policy protect a new VM: its tags, then the mapping rules, then the only vault in reach."""

from __future__ import annotations

from dataclasses import dataclass

from backupwarden.domain.arm_ids import arm_key, same_arm_id

VAULT_TAG = "backupwarden:vault"
POLICY_TAG = "backupwarden:policy"
DEFAULT_POLICY = "DefaultPolicy"


@dataclass(frozen=True)
class VaultFacts:
    vault_id: str
    name: str
    subscription_id: str
    location: str


@dataclass(frozen=True)
class VmFacts:
    vm_id: str
    subscription_id: str
    location: str
    tags: dict[str, str]


@dataclass(frozen=True)
class MappingRule:
    """Route VMs of a subscription and region (optionally with a tag value) to a vault and policy."""

    vault: str  # vault name (in the VM's subscription) or full vault id
    policy: str = DEFAULT_POLICY
    subscription_id: str | None = None
    location: str | None = None
    tag: str | None = None
    tag_value: str | None = None

    def matches(self, vm: VmFacts) -> bool:
        if self.subscription_id and not same_arm_id(self.subscription_id, vm.subscription_id):
            return False
        if self.location and _region(self.location) != _region(vm.location):
            return False
        if self.tag:
            value = _tag(vm.tags, self.tag)
            if value is None or (self.tag_value is not None and value != self.tag_value):
                return False
        return True


@dataclass(frozen=True)
class VaultChoice:
    vault: VaultFacts | None  # None: no vault fits (outcome no_vault)
    policy: str
    reason: str


def choose_vault(vm: VmFacts, vaults: list[VaultFacts], rules: list[MappingRule]) -> VaultChoice:
    """`vaults` are those of the VM's subscription; a VM can only use one in its own region."""
    tag_vault = _tag(vm.tags, VAULT_TAG)
    tag_policy = _tag(vm.tags, POLICY_TAG)
    if tag_vault:
        return _named(vm, vaults, tag_vault, tag_policy or DEFAULT_POLICY, f"tag {VAULT_TAG}")
    for index, rule in enumerate(rules):
        if rule.matches(vm):
            return _named(vm, vaults, rule.vault, tag_policy or rule.policy, f"mapping rule {index + 1}")
    in_region = [v for v in vaults if _region(v.location) == _region(vm.location)]
    if len(in_region) == 1:
        return VaultChoice(in_region[0], tag_policy or DEFAULT_POLICY, f"the only vault in {vm.location}")
    if not in_region:
        return VaultChoice(None, "", f"no vault in region {vm.location} of subscription {vm.subscription_id}")
    names = ", ".join(sorted(v.name for v in in_region))
    return VaultChoice(
        None, "", f"{len(in_region)} vaults in {vm.location} ({names}): tag {VAULT_TAG} or add a rule"
    )


def _named(vm: VmFacts, vaults: list[VaultFacts], wanted: str, policy: str, source: str) -> VaultChoice:
    key = arm_key(wanted.strip())
    found = next((v for v in vaults if key in (arm_key(v.name), arm_key(v.vault_id))), None)
    if found is None:
        return VaultChoice(
            None, "", f"{source} names vault {wanted}, which is not in subscription {vm.subscription_id}"
        )
    if _region(found.location) != _region(vm.location):
        return VaultChoice(
            None, "", f"{source} names vault {found.name} in {found.location}, but the VM is in {vm.location}"
        )
    return VaultChoice(found, policy, f"{source} names vault {found.name}")


def _tag(tags: dict[str, str], name: str) -> str | None:
    """The value of tag `name`; tag names are case-insensitive in Azure."""
    wanted = name.lower()
    for key, value in tags.items():
        if key.lower() == wanted:
            return value.strip()
    return None


def _region(location: str) -> str:
    return location.replace(" ", "").lower()
