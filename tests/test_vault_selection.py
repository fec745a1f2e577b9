"""choose_vault: tags, then mapping rules, then the only vault in the VM's region; and the rules setting."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from backupwarden.domain.vault_selection import MappingRule, VaultFacts, VmFacts, choose_vault
from backupwarden.settings import Settings, SettingsError

SUB = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
OTHER_SUB = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"


def vault(name: str, location: str, subscription: str = SUB) -> VaultFacts:
    provider = "providers/Microsoft.RecoveryServices/vaults"
    vault_id = f"/subscriptions/{subscription}/resourceGroups/rg-backup/{provider}/{name}"
    return VaultFacts(vault_id, name, subscription, location)


# The VM's subscription: two vaults in westeurope, one in northeurope, one in eastus; none in swedencentral.
VAULTS = [
    vault("rsv-weu-1", "westeurope"),
    vault("rsv-weu-2", "westeurope"),
    vault("rsv-neu", "northeurope"),
    vault("rsv-eus", "eastus"),
]


@dataclass(frozen=True)
class Case:
    name: str
    location: str
    expected_vault: str | None
    reason: str
    tags: dict[str, str] = field(default_factory=dict)
    rules: tuple[MappingRule, ...] = ()
    policy: str = ""
    subscription: str = SUB


CASES = [
    # --- tags on the VM first
    Case(
        "tag vault and tag policy",
        "westeurope",
        "rsv-weu-2",
        "tag backupwarden:vault names vault rsv-weu-2",
        tags={"backupwarden:vault": "rsv-weu-2", "backupwarden:policy": "EnhancedPolicy"},
        policy="EnhancedPolicy",
    ),
    Case(
        "tag vault alone takes the default policy",
        "westeurope",
        "rsv-weu-1",
        "tag backupwarden:vault names vault rsv-weu-1",
        tags={"backupwarden:vault": "rsv-weu-1"},
        policy="DefaultPolicy",
    ),
    Case(
        "tag names and values in any case",
        "westeurope",
        "rsv-weu-1",
        "names vault rsv-weu-1",
        tags={"BackupWarden:Vault": " RSV-WEU-1 ", "BACKUPWARDEN:POLICY": "Nightly"},
        policy="Nightly",
    ),
    Case(
        "tag vault by its full id",
        "westeurope",
        "rsv-weu-2",
        "names vault rsv-weu-2",
        tags={"backupwarden:vault": VAULTS[1].vault_id.upper()},
        policy="DefaultPolicy",
    ),
    Case(
        "tag vault wins over a matching rule",
        "westeurope",
        "rsv-weu-2",
        "tag backupwarden:vault",
        tags={"backupwarden:vault": "rsv-weu-2"},
        rules=(MappingRule(vault="rsv-weu-1", location="westeurope"),),
        policy="DefaultPolicy",
    ),
    Case(
        "tag naming a vault in another region",
        "westeurope",
        None,
        "tag backupwarden:vault names vault rsv-neu in northeurope, but the VM is in westeurope",
        tags={"backupwarden:vault": "rsv-neu"},
    ),
    Case(
        "tag naming an unknown vault",
        "westeurope",
        None,
        f"tag backupwarden:vault names vault rsv-nowhere, which is not in subscription {SUB}",
        tags={"backupwarden:vault": "rsv-nowhere"},
    ),
    Case(
        "tag naming a vault of another subscription",
        "westeurope",
        None,
        f"which is not in subscription {SUB}",
        tags={"backupwarden:vault": vault("rsv-weu-1", "westeurope", OTHER_SUB).vault_id},
    ),
    Case(
        "blank tag vault is no choice: the only vault in the region",
        "northeurope",
        "rsv-neu",
        "the only vault in northeurope",
        tags={"backupwarden:vault": "  "},
        policy="DefaultPolicy",
    ),
    # --- mapping rules, first match wins
    Case(
        "rule by subscription and region",
        "westeurope",
        "rsv-weu-2",
        "mapping rule 1 names vault rsv-weu-2",
        rules=(MappingRule(vault="rsv-weu-2", policy="Gold", subscription_id=SUB, location="westeurope"),),
        policy="Gold",
    ),
    Case(
        "rule of another subscription does not match",
        "westeurope",
        None,
        "2 vaults in westeurope (rsv-weu-1, rsv-weu-2): tag backupwarden:vault or add a rule",
        rules=(MappingRule(vault="rsv-weu-2", subscription_id=OTHER_SUB),),
    ),
    Case(
        "rule of another region does not match",
        "westeurope",
        None,
        "2 vaults in westeurope",
        rules=(MappingRule(vault="rsv-weu-2", location="northeurope"),),
    ),
    Case(
        "rule region written as a display name",
        "westeurope",
        "rsv-weu-1",
        "mapping rule 1",
        rules=(MappingRule(vault="rsv-weu-1", location="West Europe"),),
        policy="DefaultPolicy",
    ),
    Case(
        "rule by tag value",
        "westeurope",
        "rsv-weu-2",
        "mapping rule 2 names vault rsv-weu-2",
        tags={"env": "prod"},
        rules=(
            MappingRule(vault="rsv-weu-1", policy="Dev", tag="env", tag_value="dev"),
            MappingRule(vault="rsv-weu-2", policy="Prod", tag="env", tag_value="prod"),
        ),
        policy="Prod",
    ),
    Case(
        "rule by tag name in any case",
        "westeurope",
        "rsv-weu-1",
        "mapping rule 1",
        tags={"ENV": "prod"},
        rules=(MappingRule(vault="rsv-weu-1", tag="Env", tag_value="prod"),),
        policy="DefaultPolicy",
    ),
    Case(
        "rule by tag presence",
        "westeurope",
        "rsv-weu-1",
        "mapping rule 1",
        tags={"tier": "anything"},
        rules=(MappingRule(vault="rsv-weu-1", tag="tier"),),
        policy="DefaultPolicy",
    ),
    Case(
        "rule tag value is case-sensitive, as Azure tag values are",
        "westeurope",
        None,
        "2 vaults in westeurope",
        tags={"env": "Prod"},
        rules=(MappingRule(vault="rsv-weu-1", tag="env", tag_value="prod"),),
    ),
    Case(
        "first matching rule wins",
        "westeurope",
        "rsv-weu-1",
        "mapping rule 1",
        rules=(MappingRule(vault="rsv-weu-1", location="westeurope"), MappingRule(vault="rsv-weu-2")),
        policy="DefaultPolicy",
    ),
    Case(
        "first match wins even when its vault is elsewhere (an escalation, not a fallback)",
        "westeurope",
        None,
        "mapping rule 1 names vault rsv-neu in northeurope, but the VM is in westeurope",
        rules=(MappingRule(vault="rsv-neu"), MappingRule(vault="rsv-weu-1")),
    ),
    Case(
        "tag policy wins over the rule's policy",
        "westeurope",
        "rsv-weu-2",
        "mapping rule 1",
        tags={"backupwarden:policy": "Hourly"},
        rules=(MappingRule(vault="rsv-weu-2", policy="Gold"),),
        policy="Hourly",
    ),
    # --- the only vault in the VM's region and subscription
    Case(
        "the only vault in the region",
        "northeurope",
        "rsv-neu",
        "the only vault in northeurope",
        policy="DefaultPolicy",
    ),
    Case(
        "the only vault in the region, with the tag's policy",
        "eastus",
        "rsv-eus",
        "the only vault in eastus",
        tags={"backupwarden:policy": "EnhancedPolicy"},
        policy="EnhancedPolicy",
    ),
    Case(
        "no vault in the region",
        "swedencentral",
        None,
        f"no vault in region swedencentral of subscription {SUB}",
    ),
    Case(
        "several vaults in the region",
        "westeurope",
        None,
        "2 vaults in westeurope (rsv-weu-1, rsv-weu-2): tag backupwarden:vault or add a rule",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_choose_vault(case: Case) -> None:
    vm = VmFacts(
        f"/subscriptions/{case.subscription}/resourcegroups/rg/providers/microsoft.compute/virtualmachines/vm1",
        case.subscription,
        case.location,
        case.tags,
    )
    choice = choose_vault(vm, VAULTS, list(case.rules))
    assert (choice.vault.name if choice.vault else None) == case.expected_vault, choice.reason
    assert case.reason in choice.reason
    if case.expected_vault is None:
        assert choice.policy == ""
    else:
        assert choice.policy == case.policy


def test_no_vaults_at_all() -> None:
    vm = VmFacts("id", SUB, "westeurope", {})
    choice = choose_vault(vm, [], [MappingRule(vault="rsv-weu-1")])
    assert choice.vault is None
    assert choice.reason == f"mapping rule 1 names vault rsv-weu-1, which is not in subscription {SUB}"


# --- the BACKUPWARDEN_VAULT_RULES setting ---------------------------------------------------------
BASE = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}


def rules_from(text: str) -> tuple[MappingRule, ...]:
    return Settings.from_env({**BASE, "BACKUPWARDEN_VAULT_RULES": text}).vault_rules


def test_rules_setting_parses_every_key() -> None:
    rules = rules_from(
        '[{"vault": " rsv-weu-2 ", "policy": " Gold ",'
        ' "subscription": "AAAAAAAA-AAAA-4AAA-8AAA-AAAAAAAAAAAA", "location": "westeurope",'
        ' "tag": "Env", "tag_value": "prod"}, {"vault": "rsv-neu"}]'
    )
    assert rules == (
        MappingRule(
            vault="rsv-weu-2",
            policy="Gold",
            subscription_id=SUB,
            location="westeurope",
            tag="env",
            tag_value="prod",
        ),
        MappingRule(vault="rsv-neu", policy="DefaultPolicy"),
    )


def test_rules_setting_drives_the_choice() -> None:
    rules = rules_from('[{"vault": "rsv-weu-1", "tag": "env", "tag_value": "dev"}, {"vault": "rsv-weu-2"}]')
    dev = choose_vault(VmFacts("id", SUB, "westeurope", {"Env": "dev"}), VAULTS, list(rules))
    prod = choose_vault(VmFacts("id", SUB, "westeurope", {"env": "prod"}), VAULTS, list(rules))
    assert dev.vault is not None and dev.vault.name == "rsv-weu-1"
    assert prod.vault is not None and prod.vault.name == "rsv-weu-2"


def test_rules_setting_blank_means_no_rules() -> None:
    assert rules_from("  ") == ()


BAD_RULES = [
    ("not JSON", "[{vault: x}]", "not JSON"),
    ("not an array", '{"vault": "rsv"}', "must be a JSON array of rules"),
    ("rule not an object", "[1]", "rule 1: must be an object with a non-empty 'vault'"),
    (
        "rule without vault",
        '[{"vault": "a"}, {"policy": "p"}]',
        "rule 2: must be an object with a non-empty 'vault'",
    ),
    ("blank vault", '[{"vault": " "}]', "rule 1: must be an object with a non-empty 'vault'"),
    ("unknown key", '[{"vault": "a", "region": "westeurope"}]', "rule 1: unknown keys ['region']"),
    ("value not a string", '[{"vault": "a", "tag": 1}]', "rule 1: every value must be a string"),
    (
        "subscription not a GUID",
        '[{"vault": "a", "subscription": "prod"}]',
        "rule 1: subscription is not a GUID",
    ),
    ("tag_value without tag", '[{"vault": "a", "tag_value": "prod"}]', "rule 1: tag_value needs tag"),
    ("blank policy", '[{"vault": "a", "policy": " "}]', "rule 1: policy must not be blank"),
]


@pytest.mark.parametrize(("text", "message"), [c[1:] for c in BAD_RULES], ids=[c[0] for c in BAD_RULES])
def test_malformed_rules_setting_names_the_setting(text: str, message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        rules_from(text)
    assert str(raised.value).startswith("BACKUPWARDEN_VAULT_RULES: ")
    assert message in str(raised.value)
