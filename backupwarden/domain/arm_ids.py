"""ARM ids and names compared the way ARM compares them: case-insensitive for ASCII letters only.

`str.lower()` is not that: it turns 'İ' into two characters and the Kelvin sign into 'k', so two
different VMs could share a key and one VM's id could stop matching itself.
"""

from __future__ import annotations

import string

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def arm_key(text: str) -> str:
    """The text with A-Z lower-cased and every other character as it is: what keys and compares ids."""
    return text.translate(_ASCII_LOWER)


def same_arm_id(a: str, b: str) -> bool:
    return arm_key(a) == arm_key(b)


def subscription_of(arm_id: str) -> str:
    """The subscription id of /subscriptions/{id}/..., lower-cased as `arm_key`; "" when it names none."""
    parts = arm_key(arm_id).strip("/").split("/")
    return parts[1] if len(parts) > 1 and parts[0] == "subscriptions" else ""


def resource_group_of(arm_id: str) -> str:
    """The resource group name of .../resourceGroups/{name}/..., as written; "" when it names none."""
    parts = arm_id.strip("/").split("/")
    keys = [arm_key(part) for part in parts]
    return parts[keys.index("resourcegroups") + 1] if "resourcegroups" in keys[:-1] else ""
