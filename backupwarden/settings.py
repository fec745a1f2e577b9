"""Every setting backupwarden reads, parsed once into a frozen dataclass.

`SETTINGS` is the table of them: each app setting's name, the `Settings` field it fills and its
parser, every name once; `Settings.from_env` reads the table, then applies the few rules between
settings. A missing or malformed value raises `SettingsError` whose message starts with the
setting's name, so a bad app setting fails the start of a run, not the middle of it. A blank value
counts as unset (App Service keeps empty app settings as empty strings).

Reading order: the value parsers first (the table is built from them), then `Settings`, the table
and the rules.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from backupwarden.domain.failure_classes import FailureClass
from backupwarden.domain.protection_states import EnrollExisting
from backupwarden.domain.vault_selection import MappingRule

StrEnumT = TypeVar("StrEnumT", bound=StrEnum)

# Azurite's well-known development account (public, documented by Microsoft; not a secret).
AZURITE_ACCOUNT_NAME = "devstoreaccount1"
AZURITE_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
DEVELOPMENT_STORAGE = "UseDevelopmentStorage=true"
# Where the tenant's signing keys are published; {tenant} is BACKUPWARDEN_TENANT_ID.
DEFAULT_OPENID_CONFIGURATION_URL = (
    "https://login.microsoftonline.com/{tenant}/v2.0/.well-known/openid-configuration"
)


def azurite_connection_string(
    blob_port: int = 10000, queue_port: int = 10001, table_port: int = 10002
) -> str:
    """The connection string of an Azurite on loopback (default ports = `UseDevelopmentStorage=true`)."""
    base = "http://127.0.0.1"
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT_NAME};AccountKey={AZURITE_ACCOUNT_KEY};"
        f"BlobEndpoint={base}:{blob_port}/{AZURITE_ACCOUNT_NAME};"
        f"QueueEndpoint={base}:{queue_port}/{AZURITE_ACCOUNT_NAME};"
        f"TableEndpoint={base}:{table_port}/{AZURITE_ACCOUNT_NAME};"
    )


class SettingsError(ValueError):
    """A setting is missing or malformed; the message starts with the setting's name."""


class DiscoveryMode(StrEnum):
    """How the sweep finds its candidates (BACKUPWARDEN_DISCOVERY)."""

    RESOURCE_GRAPH = "resource-graph"
    VAULTS = "vaults"


class CredentialKind(StrEnum):
    DEFAULT = "default"
    STATIC_TOKEN = "static-token"


# --- value parsers: each takes the stripped raw text and raises ValueError ------------------------

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DURATION = re.compile(r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")
_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")
_ACCOUNT_NAME = re.compile(r"^[a-z0-9]{3,24}$")
_NCRONTAB_FIELD = re.compile(r"^[0-9A-Za-z*/,\-]+$")
_NCRONTAB_ITEM = re.compile(
    r"^(?:(?P<all>\*)|(?P<low>[0-9A-Za-z]+)(?:-(?P<high>[0-9A-Za-z]+))?)(?:/(?P<step>[0-9]+))?$"
)
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# (name, lowest, highest, names for the values from lowest up) of the six NCRONTAB fields, in order
_NCRONTAB_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("second", 0, 59, ()),
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 6, _WEEKDAYS),
)
# The longest duration any setting or the CLI takes; each setting bounds its own more tightly.
MAX_DURATION = timedelta(days=3650)
# BACKUPWARDEN_JOBS_OVERLAP: a job re-read within the overlap is recognised as shipped by its marker,
# which the outcomes flow keeps 7 days (flows/outcomes/shipping.py, MARKER_RETENTION). An overlap of
# at most 6 days leaves a day's margin for a stalled watermark; Resource Graph's lag is minutes to hours.
MAX_JOBS_OVERLAP = timedelta(days=6)
# BACKUPWARDEN_GRACE_PERIOD: a VM still without its first backup after a week is what the sweep is for.
MAX_GRACE_PERIOD = timedelta(days=7)
# BACKUPWARDEN_RETRY_BACKOFF: retries count against a daily cap; a longer backoff would disable them.
MAX_RETRY_BACKOFF = timedelta(days=1)
# BACKUPWARDEN_RETRY_AFTER_MAX: ARM's and Resource Graph's Retry-After are seconds to a minute; a
# longer one (or an HTTP date far ahead) is waited out by the next run or the queue's redelivery,
# not by one call that would outlive its function.
MIN_RETRY_AFTER_MAX = timedelta(seconds=1)
MAX_RETRY_AFTER_MAX = timedelta(minutes=5)
# BACKUPWARDEN_TIME_BUDGET: what one run (a timer or queue invocation, a CLI command) may spend before
# it hands the rest on. The default leaves host.json's functionTimeout (10 min) room for the calls
# in flight when it runs out (each ends within CALL_TIMEOUT_SHARE of the budget): 7m + 1m45s.
MIN_TIME_BUDGET = timedelta(minutes=1)
MAX_TIME_BUDGET = timedelta(hours=1)
CALL_TIMEOUT_SHARE = 4
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def parse_duration(text: str) -> timedelta:
    """`0`, `90s`, `30m`, `1h`, `2d` or a combination like `1h30m` (largest first), up to MAX_DURATION."""
    value = text.strip().lower()
    if value == "0":
        return timedelta(0)
    match = _DURATION.match(value)
    if not value or match is None:
        raise ValueError(f"not a duration like 1h, 30m, 90s, 2d or 0: {text[:100]!r}")
    amounts = [amount for amount in match.groupdict().values() if amount is not None]
    too_long = ValueError(f"longer than {_human_duration(MAX_DURATION)}: {text[:100]!r}")
    if any(len(amount.lstrip("0")) > 9 for amount in amounts):  # before int(): no huge numbers
        raise too_long
    parts = {unit: int(amount) for unit, amount in match.groupdict().items() if amount is not None}
    # in whole seconds first: timedelta itself overflows past 999,999,999 days
    seconds = sum(
        parts.get(unit, 0) * size for unit, size in (("d", 86_400), ("h", 3600), ("m", 60), ("s", 1))
    )
    if seconds > MAX_DURATION.total_seconds():
        raise too_long
    return timedelta(seconds=seconds)


def _human_duration(duration: timedelta) -> str:
    """A duration written as parse_duration reads it, largest unit first: 7d, 1h30m, 1m30s."""
    if not duration:
        return "0"
    seconds = int(duration.total_seconds())
    days, seconds = divmod(seconds, 86_400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    units = ((days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s"))
    return "".join(f"{amount}{unit}" for amount, unit in units if amount)


def parse_subscription_ids(text: str) -> tuple[str, ...]:
    ids: list[str] = []
    for part in text.split(","):
        candidate = part.strip()
        if not candidate:
            continue
        if not _GUID.match(candidate):
            raise ValueError(f"not a subscription id (GUID): {candidate!r}")
        normalised = str(uuid.UUID(candidate))
        if normalised not in ids:
            ids.append(normalised)
    return tuple(ids)


def parse_https_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme != "https" or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"not an https URL without query or fragment: {text!r}")
    return text.rstrip("/")


def parse_bool(text: str) -> bool:
    value = text.lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"not a boolean (true/false/1/0): {text!r}")


def parse_existing_file(text: str) -> str:
    path = Path(text).expanduser()
    if not path.is_file():
        raise ValueError(f"no such file: {text!r}")
    return str(path.resolve())


def parse_table_name(text: str) -> str:
    if not _TABLE_NAME.match(text) or text.lower() == "tables":
        raise ValueError(f"not a valid table name (3-63 letters or digits, starting with a letter): {text!r}")
    return text


def parse_storage_account_name(text: str) -> str:
    if not _ACCOUNT_NAME.match(text):
        raise ValueError(f"not a storage account name (3-24 lower-case letters or digits): {text!r}")
    return text


def parse_storage_connection_string(text: str) -> str:
    """A storage connection string, with `UseDevelopmentStorage=true` expanded to Azurite's default ports.

    The value itself never appears in an error message: it may carry an account key.
    """
    if text.replace(" ", "").rstrip(";").lower() == DEVELOPMENT_STORAGE.lower():
        return azurite_connection_string()
    pairs = [segment.split("=", 1) for segment in text.split(";") if segment.strip()]
    if any(len(pair) != 2 or not pair[0].strip() for pair in pairs):
        raise ValueError("not a connection string of key=value pairs separated by ';'")
    keys = {key.strip().lower() for key, _ in pairs}
    if not keys & {"accountname", "tableendpoint"}:
        raise ValueError("connection string names neither AccountName nor TableEndpoint")
    return text


def parse_ncrontab(text: str) -> str:
    fields = text.split()
    if len(fields) != 6:
        raise ValueError(
            f"not an NCRONTAB expression with 6 fields ({{second}} {{minute}} {{hour}} {{day}} {{month}} "
            f"{{day-of-week}}): {text[:100]!r} has {len(fields)}"
        )
    if not all(_NCRONTAB_FIELD.match(part) for part in fields):
        raise ValueError(f"NCRONTAB field with unexpected characters: {text[:100]!r}")
    for part, (name, low, high, names) in zip(fields, _NCRONTAB_FIELDS, strict=True):
        for item in part.split(","):
            _check_ncrontab_item(item, name, low, high, names)
    return " ".join(fields)


def _check_ncrontab_item(item: str, name: str, low: int, high: int, names: tuple[str, ...]) -> None:
    """One comma-separated item of an NCRONTAB field: *, a value or a range a-b, with an optional /step."""
    found = _NCRONTAB_ITEM.match(item)
    if found is None:
        raise ValueError(
            f"{name} field: {item[:50]!r} is not *, a value or a range a-b, with an optional /step"
        )
    allowed = f"{low}-{high}" + (f" or {names[0].title()}-{names[-1].title()}" if names else "")

    def value(raw: str) -> int:
        if raw.lower() in names:
            return low + names.index(raw.lower())
        if not raw.isdigit() or len(raw) > 2 or not low <= int(raw) <= high:
            raise ValueError(f"{name} field: {raw[:50]!r} is not in {allowed}")
        return int(raw)

    start = low if found["all"] else value(found["low"])
    end = value(found["high"]) if found["high"] else (high if found["all"] or found["step"] else start)
    if start > end:
        raise ValueError(f"{name} field: the range {item[:50]!r} runs backwards")
    step = found["step"]
    if step is not None and not (len(step) <= 2 and 1 <= int(step) <= high):
        raise ValueError(f"{name} field: the step in {item[:50]!r} must be from 1 to {high}")


_QUEUE_NAME = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")
_RULE_KEYS = {"vault", "policy", "subscription", "location", "tag", "tag_value"}


_DCR_IMMUTABLE_ID = re.compile(r"^dcr-[0-9a-f]{32}$")


def parse_dcr_immutable_id(text: str) -> str:
    if not _DCR_IMMUTABLE_ID.match(text):
        raise ValueError(f"not a data collection rule immutable id (dcr- and 32 hex digits): {text!r}")
    return text


def parse_guid(text: str) -> str:
    if not _GUID.match(text):
        raise ValueError(f"not a GUID: {text!r}")
    return text.lower()


def parse_audience(text: str) -> str:
    """The `aud` a secure-webhook token must carry: the Entra app's client id or application ID URI."""
    if any(character.isspace() for character in text) or len(text) > 500:
        raise ValueError(f"not a token audience (an app id or URI, no spaces): {text[:100]!r}")
    return text


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg} at position {exc.pos}") from None
    except (ValueError, RecursionError) as exc:  # an integer too long, nesting too deep
        raise ValueError(f"not JSON this setting reads: {str(exc)[:100]}") from None


def parse_failure_classes(text: str) -> dict[str, FailureClass]:
    """A JSON object of error code to its class (a FailureClass value, e.g. "retry" or "escalate_config")."""
    raw = _json(text)
    if not isinstance(raw, dict):
        raise ValueError("must be a JSON object of error code to class")
    allowed = ", ".join(kind.value for kind in FailureClass)
    classes = {}
    for code, kind in raw.items():
        if not isinstance(kind, str) or kind not in {k.value for k in FailureClass}:
            raise ValueError(f"class of {code[:100]!r} must be one of {allowed}, not {str(kind)[:100]!r}")
        classes[str(code)] = FailureClass(kind)
    return classes


def parse_bucket(text: str) -> tuple[float, float]:
    """A token bucket as `capacity/refill per second`, e.g. `250/25` (ARM's read bucket)."""
    parts = text.replace(" ", "").split("/")
    try:
        capacity, refill = (float(part) for part in parts)
    except ValueError:
        raise ValueError(f"not a token bucket like 250/25 (capacity/refill per second): {text!r}") from None
    if not (1 <= capacity <= 1_000_000 and 0 < refill <= 1_000_000):  # also rejects nan
        raise ValueError(f"capacity must be >= 1 and refill > 0 (both at most 1000000): {text!r}")
    return capacity, refill


def parse_queue_name(text: str) -> str:
    if not _QUEUE_NAME.match(text) or len(text) > 56:  # room for the host's "-poison" suffix
        raise ValueError(f"not a queue name (3-56 lower-case letters, digits, single hyphens): {text!r}")
    return text


def parse_vault_rules(text: str) -> tuple[MappingRule, ...]:
    """A JSON array of {vault, policy?, subscription?, location?, tag?, tag_value?}, first match wins."""
    raw = _json(text)
    if not isinstance(raw, list):
        raise ValueError("must be a JSON array of rules")
    rules = []
    for index, rule in enumerate(raw):
        where = f"rule {index + 1}"
        if not isinstance(rule, dict) or not isinstance(rule.get("vault"), str) or not rule["vault"].strip():
            raise ValueError(f"{where}: must be an object with a non-empty 'vault'")
        unknown = set(rule) - _RULE_KEYS
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(_RULE_KEYS)}")
        if any(not isinstance(value, str) for value in rule.values()):
            raise ValueError(f"{where}: every value must be a string")
        subscription = rule.get("subscription")
        if subscription is not None and not _GUID.match(subscription):
            raise ValueError(f"{where}: subscription is not a GUID: {subscription!r}")
        if "tag_value" in rule and "tag" not in rule:
            raise ValueError(f"{where}: tag_value needs tag")
        if not rule.get("policy", "DefaultPolicy").strip():
            raise ValueError(f"{where}: policy must not be blank")
        rules.append(
            MappingRule(
                vault=rule["vault"].strip(),
                policy=rule.get("policy", "DefaultPolicy").strip(),
                subscription_id=subscription.lower() if subscription else None,
                location=rule.get("location"),
                tag=rule["tag"].lower() if "tag" in rule else None,
                tag_value=rule.get("tag_value"),
            )
        )
    return tuple(rules)


def _choice(kind: type[StrEnumT]) -> Callable[[str], StrEnumT]:
    def parse(text: str) -> StrEnumT:
        try:
            return kind(text.lower())
        except ValueError:
            allowed = ", ".join(member.value for member in kind)
            raise ValueError(f"must be one of {allowed}, not {text!r}") from None

    return parse


def _float_range(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"not a number: {text!r}") from None
        if not low <= value <= high:  # also rejects nan
            raise ValueError(f"must be from {low:g} to {high:g}, not {text}")
        return value

    return parse


def _duration_range(high: timedelta) -> Callable[[str], timedelta]:
    def parse(text: str) -> timedelta:
        value = parse_duration(text)
        if value > high:
            raise ValueError(f"must be from 0 to {_human_duration(high)}, not {text[:100]}")
        return value

    return parse


def _duration_between(low: timedelta, high: timedelta) -> Callable[[str], timedelta]:
    def parse(text: str) -> timedelta:
        value = parse_duration(text)
        if not low <= value <= high:
            bounds = f"{_human_duration(low)} to {_human_duration(high)}"
            raise ValueError(f"must be from {bounds}, not {text[:100]}")
        return value

    return parse


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"not an integer: {text!r}") from None
        if not low <= value <= high:
            raise ValueError(f"must be from {low} to {high}, not {value}")
        return value

    return parse


# --- the settings ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One row of SETTINGS: an app setting's name, the `Settings` field it fills, and its parser.

    The value of an unset or blank setting is the field's default in `Settings`. One row fills no
    field of its own: `storage_account_name`, which the storage rule turns into the service URIs.
    """

    name: str
    field: str
    parse: Callable[[str], Any]

    def read(self, env: Mapping[str, str], default: Any = None) -> Any:
        """The parsed value, or `default` while unset or blank; a malformed value raises SettingsError."""
        raw = env.get(self.name, "").strip()
        if not raw:
            return default
        try:
            return self.parse(raw)
        except ValueError as exc:
            raise SettingsError(f"{self.name}: {exc}") from exc
        except RecursionError:  # JSON nested just shallow enough to parse, too deep to describe
            raise SettingsError(f"{self.name}: nested too deeply") from None

    def require(self, env: Mapping[str, str], why: str) -> Any:
        """The parsed value; unset or blank raises SettingsError saying why the setting is required."""
        value = self.read(env)
        if value is None:
            raise SettingsError(f"{self.name}: missing; {why}")
        return value


@dataclass(frozen=True)
class Settings:
    """Every setting's value; a field's default here is its setting's default (while unset or blank)."""

    subscriptions: tuple[str, ...] = ()  # lower-case GUIDs; empty = every subscription the identity sees
    discovery: DiscoveryMode = DiscoveryMode.RESOURCE_GRAPH
    arm_endpoint: str = "https://management.azure.com"
    resource_graph_endpoint: str = "https://management.azure.com"  # from_env: the ARM endpoint
    log_analytics_endpoint: str = "https://api.loganalytics.io"
    logs_ingestion_endpoint: str | None = None
    credential: CredentialKind = CredentialKind.DEFAULT
    static_token: str | None = field(default=None, repr=False)
    ca_bundle: str | None = None
    grace_period: timedelta = timedelta(hours=1)
    dry_run: bool = False
    daily_budget: int = 3
    max_triggers_per_run: int = 500
    recovery_point_expiry_days: int = 30
    ledger_table: str = "backupwardenledger"
    storage_connection_string: str | None = field(default=None, repr=False)
    storage_table_uri: str | None = None  # identity-based connection (no connection string)
    storage_queue_uri: str | None = None
    sweep_schedule: str = "0 */30 * * * *"
    http_retry_total: int = 5
    operation_poll_timeout_s: int = 300
    operation_poll_interval_s: float = 1.0  # at most this long between reads of a running operation
    protect_queue: str = "backupwarden-protect"
    vault_rules: tuple[MappingRule, ...] = ()
    provisioning_recheck_s: int = 60
    max_provisioning_waits: int = 20
    dcr_immutable_id: str | None = None
    workspace_id: str | None = None
    outcomes_schedule: str = "0 */5 * * * *"
    # hourly, off the sweep's half hours: a full read of the scope is the reconciler's cost
    reconcile_schedule: str = "0 15 * * * *"
    outbox_table: str = "backupwardenoutbox"
    jobs_overlap: timedelta = timedelta(hours=1)
    remediation_queue: str = "backupwarden-remediate"
    retry_cap: int = 2
    retry_backoff: timedelta = timedelta(minutes=30)
    failure_classes: dict[str, FailureClass] = field(default_factory=dict)
    webhook_audience: str | None = None  # set: alert_webhook requires secure-webhook (Entra ID) tokens
    tenant_id: str | None = None
    openid_configuration_url: str | None = None  # unset: DEFAULT_OPENID_CONFIGURATION_URL of the tenant
    alert_dedup_table: str = "backupwardenalerts"
    sweep_queue: str = "backupwarden-sweep"
    sweep_inline_max: int = 100  # a plan of at most this many candidates is handled within the timer run
    arm_read_bucket: tuple[float, float] = (250.0, 25.0)  # (capacity, refill per second), as ARM's
    arm_write_bucket: tuple[float, float] = (200.0, 10.0)
    retry_after_max: timedelta = timedelta(seconds=60)  # the longest Retry-After a call or a pacer waits
    time_budget: timedelta = timedelta(minutes=7)  # what one run may spend before it hands the rest on
    enroll_existing: EnrollExisting = EnrollExisting.OFF  # what an unprotected VM that is not new gets
    coverage_target: float = 95.0  # percent of VMs in scope with a recovery point within RPO; below: alert

    @property
    def connection_verify(self) -> str | bool:
        """What azure-core takes as `connection_verify`: the CA bundle path, or True for the system store."""
        return self.ca_bundle or True

    @property
    def call_timeout(self) -> timedelta:
        """How long one Azure call may take with all its retries: a call still running when the
        run's budget ends must end before the host's functionTimeout."""
        return self.time_budget / CALL_TIMEOUT_SHARE

    @property
    def openid_configuration(self) -> str | None:
        """The OpenID configuration document that names the tenant's signing keys (`jwks_uri`)."""
        if self.openid_configuration_url:
            return self.openid_configuration_url
        return DEFAULT_OPENID_CONFIGURATION_URL.format(tenant=self.tenant_id) if self.tenant_id else None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings in `env` (default: os.environ): each row of SETTINGS, then the rules between them."""
        env = os.environ if env is None else env
        defaults = cls()
        values = _storage_fields(env)  # first: without storage nothing runs
        for setting in SETTINGS:
            if setting.field not in _READ_BY_RULES:
                values[setting.field] = setting.read(env, getattr(defaults, setting.field))
        values["resource_graph_endpoint"] = _resource_graph_endpoint(env, values["arm_endpoint"])
        values["static_token"] = _static_token(env, values["credential"])
        values["tenant_id"] = _tenant_id(env, values["webhook_audience"])
        return cls(**values)


# Every setting, each name once: (name, the Settings field it fills, its parser); storage first, then
# in the order of the fields above. Unset or blank, a setting leaves its field's default. A row marked
# "rule" is read by the rules after the table: another setting decides its default, or whether it
# is read or required.
SETTINGS: tuple[Setting, ...] = (
    Setting("AzureWebJobsStorage", "storage_connection_string", parse_storage_connection_string),  # rule
    Setting("AzureWebJobsStorage__accountName", "storage_account_name", parse_storage_account_name),  # rule
    Setting("AzureWebJobsStorage__tableServiceUri", "storage_table_uri", parse_https_url),  # rule
    Setting("AzureWebJobsStorage__queueServiceUri", "storage_queue_uri", parse_https_url),  # rule
    Setting("BACKUPWARDEN_SUBSCRIPTIONS", "subscriptions", parse_subscription_ids),
    Setting("BACKUPWARDEN_DISCOVERY", "discovery", _choice(DiscoveryMode)),
    Setting("BACKUPWARDEN_ARM_ENDPOINT", "arm_endpoint", parse_https_url),
    Setting("BACKUPWARDEN_RESOURCE_GRAPH_ENDPOINT", "resource_graph_endpoint", parse_https_url),  # rule
    Setting("BACKUPWARDEN_LOG_ANALYTICS_ENDPOINT", "log_analytics_endpoint", parse_https_url),
    Setting("BACKUPWARDEN_LOGS_INGESTION_ENDPOINT", "logs_ingestion_endpoint", parse_https_url),
    Setting("BACKUPWARDEN_CREDENTIAL", "credential", _choice(CredentialKind)),
    Setting("BACKUPWARDEN_STATIC_TOKEN", "static_token", str),  # rule
    Setting("BACKUPWARDEN_CA_BUNDLE", "ca_bundle", parse_existing_file),
    Setting("BACKUPWARDEN_GRACE_PERIOD", "grace_period", _duration_range(MAX_GRACE_PERIOD)),
    Setting("BACKUPWARDEN_DRY_RUN", "dry_run", parse_bool),
    Setting("BACKUPWARDEN_DAILY_BUDGET", "daily_budget", _int_range(1, 9)),
    Setting("BACKUPWARDEN_MAX_TRIGGERS_PER_RUN", "max_triggers_per_run", _int_range(1, 100_000)),
    Setting("BACKUPWARDEN_RECOVERY_POINT_EXPIRY_DAYS", "recovery_point_expiry_days", _int_range(1, 9999)),
    Setting("BACKUPWARDEN_LEDGER_TABLE", "ledger_table", parse_table_name),
    Setting("SWEEP_SCHEDULE", "sweep_schedule", parse_ncrontab),
    Setting("BACKUPWARDEN_HTTP_RETRY_TOTAL", "http_retry_total", _int_range(0, 20)),
    Setting("BACKUPWARDEN_OPERATION_POLL_TIMEOUT_S", "operation_poll_timeout_s", _int_range(1, 3600)),
    Setting("BACKUPWARDEN_OPERATION_POLL_INTERVAL_S", "operation_poll_interval_s", _float_range(0.01, 60.0)),
    Setting("BACKUPWARDEN_PROTECT_QUEUE", "protect_queue", parse_queue_name),
    Setting("BACKUPWARDEN_VAULT_RULES", "vault_rules", parse_vault_rules),
    Setting("BACKUPWARDEN_PROVISIONING_RECHECK_S", "provisioning_recheck_s", _int_range(1, 3600)),
    Setting("BACKUPWARDEN_MAX_PROVISIONING_WAITS", "max_provisioning_waits", _int_range(0, 1000)),
    Setting("BACKUPWARDEN_DCR_IMMUTABLE_ID", "dcr_immutable_id", parse_dcr_immutable_id),
    Setting("BACKUPWARDEN_LOG_ANALYTICS_WORKSPACE_ID", "workspace_id", parse_guid),
    Setting("OUTCOMES_SCHEDULE", "outcomes_schedule", parse_ncrontab),
    Setting("RECONCILE_SCHEDULE", "reconcile_schedule", parse_ncrontab),
    Setting("BACKUPWARDEN_OUTBOX_TABLE", "outbox_table", parse_table_name),
    Setting("BACKUPWARDEN_JOBS_OVERLAP", "jobs_overlap", _duration_range(MAX_JOBS_OVERLAP)),
    Setting("BACKUPWARDEN_REMEDIATION_QUEUE", "remediation_queue", parse_queue_name),
    Setting("BACKUPWARDEN_RETRY_CAP", "retry_cap", _int_range(0, 9)),
    Setting("BACKUPWARDEN_RETRY_BACKOFF", "retry_backoff", _duration_range(MAX_RETRY_BACKOFF)),
    Setting("BACKUPWARDEN_FAILURE_CLASSES", "failure_classes", parse_failure_classes),
    Setting("BACKUPWARDEN_WEBHOOK_AUDIENCE", "webhook_audience", parse_audience),
    Setting("BACKUPWARDEN_TENANT_ID", "tenant_id", parse_guid),  # rule
    Setting("BACKUPWARDEN_OPENID_CONFIGURATION_URL", "openid_configuration_url", parse_https_url),
    Setting("BACKUPWARDEN_ALERT_DEDUP_TABLE", "alert_dedup_table", parse_table_name),
    Setting("BACKUPWARDEN_SWEEP_QUEUE", "sweep_queue", parse_queue_name),
    Setting("BACKUPWARDEN_SWEEP_INLINE_MAX", "sweep_inline_max", _int_range(0, 100_000)),
    Setting("BACKUPWARDEN_ARM_READ_BUCKET", "arm_read_bucket", parse_bucket),
    Setting("BACKUPWARDEN_ARM_WRITE_BUCKET", "arm_write_bucket", parse_bucket),
    Setting(
        "BACKUPWARDEN_RETRY_AFTER_MAX",
        "retry_after_max",
        _duration_between(MIN_RETRY_AFTER_MAX, MAX_RETRY_AFTER_MAX),
    ),
    Setting("BACKUPWARDEN_TIME_BUDGET", "time_budget", _duration_between(MIN_TIME_BUDGET, MAX_TIME_BUDGET)),
    Setting("BACKUPWARDEN_ENROLL_EXISTING", "enroll_existing", _choice(EnrollExisting)),
    Setting("BACKUPWARDEN_COVERAGE_TARGET", "coverage_target", _float_range(0.0, 100.0)),
)

# Every environment name Settings.from_env may read (tests/test_infra.py holds infra/'s app settings
# and this tuple to what from_env actually reads).
SETTING_NAMES: tuple[str, ...] = tuple(setting.name for setting in SETTINGS)


# --- the rules between settings --------------------------------------------------------------------

_BY_FIELD = {setting.field: setting for setting in SETTINGS}
_STORAGE_FIELDS = (
    "storage_connection_string",
    "storage_account_name",
    "storage_table_uri",
    "storage_queue_uri",
)
_READ_BY_RULES = frozenset({*_STORAGE_FIELDS, "resource_graph_endpoint", "static_token", "tenant_id"})


def _storage_fields(env: Mapping[str, str]) -> dict[str, Any]:
    """The storage fields from the Functions storage settings.

    `AzureWebJobsStorage` (a connection string) wins; otherwise the identity-based
    `AzureWebJobsStorage__tableServiceUri` / `__queueServiceUri` / `__accountName` settings apply.
    """
    connection, account, table, queue = (_BY_FIELD[name] for name in _STORAGE_FIELDS)
    connection_string = connection.read(env)
    if connection_string is not None:
        return {connection.field: connection_string}
    account_name = account.read(env)
    table_uri = table.read(env)
    queue_uri = queue.read(env)
    if account_name is not None:
        table_uri = table_uri or f"https://{account_name}.table.core.windows.net"
        queue_uri = queue_uri or f"https://{account_name}.queue.core.windows.net"
    if table_uri is None:
        raise SettingsError(
            f"{connection.name}: missing; set a connection string, {DEVELOPMENT_STORAGE} (Azurite), or "
            f"{account.name} / {table.name} for an identity-based connection"
        )
    return {table.field: table_uri, queue.field: queue_uri}


def _resource_graph_endpoint(env: Mapping[str, str], arm_endpoint: str) -> str:
    """Unset, Resource Graph is reached through the ARM endpoint (one setting for a sovereign cloud)."""
    endpoint: str = _BY_FIELD["resource_graph_endpoint"].read(env, arm_endpoint)
    return endpoint


def _static_token(env: Mapping[str, str], credential: CredentialKind) -> str | None:
    """The bearer token: required with the static-token credential, ignored otherwise."""
    if credential is not CredentialKind.STATIC_TOKEN:
        return None
    why = f"required when {_BY_FIELD['credential'].name}={CredentialKind.STATIC_TOKEN}"
    token: str = _BY_FIELD["static_token"].require(env, why)
    return token


def _tenant_id(env: Mapping[str, str], webhook_audience: str | None) -> str | None:
    """The tenant whose tokens the secure webhook accepts: required once an audience is set."""
    tenant = _BY_FIELD["tenant_id"]
    if webhook_audience is None:
        optional: str | None = tenant.read(env)
        return optional
    why = f"required when {_BY_FIELD['webhook_audience'].name} is set (secure webhook)"
    required: str = tenant.require(env, why)
    return required
