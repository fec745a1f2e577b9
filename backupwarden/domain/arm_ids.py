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
