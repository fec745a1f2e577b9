"""JSON read from outside (a CLI file or stdin): one place that turns every way `json.loads` fails
into the caller's own error with a readable reason."""

from __future__ import annotations

import json
from typing import Any


def json_items(text: str, invalid: type[Exception]) -> list[Any]:
    """One JSON value or a JSON array of them, as a list; `invalid` names what is wrong."""
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise invalid(f"not JSON: {exc.msg} at line {exc.lineno}") from None
    except RecursionError:
        raise invalid("not JSON this command reads: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer too long to convert
        raise invalid(f"not JSON this command reads: {str(exc)[:200]}") from None
    return parsed if isinstance(parsed, list) else [parsed]
