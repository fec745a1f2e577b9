"""Azure Table Storage calls every storage adapter shares: creating a table, and writing on an ETag.

"Write on an ETag" is the optimistic-concurrency step of the ledger's claims, the alert
de-duplication, the run counter and the outbox's watermarks: create the entity when nothing was
read (only one creator wins), or else replace the version read (only one replacer wins).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError
from azure.data.tables import TableClient, UpdateMode

NO_ECHO = "return-no-content"  # an insert's answer need not repeat the entity: its ETag is a header


def ensure_table(table: TableClient, unavailable: type[Exception]) -> None:
    """Create the table if it is missing; `unavailable` (with the cause chained) when Storage fails."""
    try:
        table.create_table()
    except ResourceExistsError:
        pass
    except AzureError as exc:
        raise unavailable(f"cannot create table {table.table_name}") from exc


def write_on_etag(table: TableClient, entity: Mapping[str, Any], etag: str | None) -> str:
    """Create `entity` (`etag` None) or replace the version `etag` with it; returns the new ETag.

    Raises ResourceExistsError (created meanwhile), ResourceModifiedError (changed since read) or
    ResourceNotFoundError (deleted since read) when another writer got there first.
    """
    if etag is None:
        written = table.create_entity(entity, response_preference=NO_ECHO)
    else:
        written = table.update_entity(
            entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
        )
    return str(written["etag"])


def merge_on_etag(table: TableClient, entity: Mapping[str, Any], etag: str) -> None:
    """Merge `entity`'s values into the version `etag` only (ResourceModifiedError when it changed)."""
    table.update_entity(
        entity, mode=UpdateMode.MERGE, etag=etag, match_condition=MatchConditions.IfNotModified
    )


def outcome_unknown(error: AzureError) -> bool:
    """Whether a write that raised may be stored all the same: no answer came, or a server error."""
    status = getattr(error, "status_code", None)
    return status is None or status >= 500
