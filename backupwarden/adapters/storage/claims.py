"""Claims with expiry on Azure Table Storage: the state machine the ledger and the alert de-duplication share.

A claim is one entity per key, saying "in progress until `expires`", that its holder settles
(marks done or failed) or releases (deletes: "save in progress first, delete on failure"), as
AWS Lambda Powertools' idempotency persistence layer does for its stores. What the statuses are
and when an existing entity may be taken over is the owner's policy (the ledger's daily budget,
the de-duplication's "pending and expired"); this module holds the Table Storage mechanics:

- claim: insert if absent (only one creator wins); an entity already there is judged by the
  owner, and taken over only with a REPLACE conditioned on the ETag read (only one replacer wins).
  Nothing is read and then written without that condition.
- settle and release: a MERGE or a DELETE conditioned on the claim's ETag, so a claim taken over
  meanwhile is not overwritten; its holder hears ClaimLost (the owner's exception).
- lost answers: a write may be stored though its caller never hears so (the connection drops after
  the request went out; azure-core retries a 5xx though the first try was stored, and the retry
  meets 409, 412 or 404). Every claim entity carries a random `token`; when a write's answer is
  lost or contradicts it, the entity is read back and the token (with the values written) says
  whether the write is there.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient

from backupwarden.adapters.storage.tables import ensure_table, merge_on_etag, outcome_unknown, write_on_etag
from backupwarden.domain.times import parse_time

logger = logging.getLogger(__name__)

CLAIM_ROUNDS = 3  # insert -> read -> replace, retried when the entity vanishes in between

Entity = dict[str, Any]


def new_token() -> str:
    """A claim entity's `token`: which claim wrote it."""
    return uuid.uuid4().hex


class ClaimKey(Protocol):
    """What settling or releasing a claim needs: its keys, the ETag it holds and its token."""

    @property
    def partition_key(self) -> str: ...

    @property
    def row_key(self) -> str: ...

    @property
    def etag(self) -> str: ...

    @property
    def token(self) -> str: ...


@dataclass(frozen=True)
class Version:
    """One version of an entity: its values and its ETag."""

    entity: Mapping[str, Any]
    etag: str

    @property
    def partition_key(self) -> str:
        return str(self.entity["PartitionKey"])

    @property
    def row_key(self) -> str:
        return str(self.entity["RowKey"])

    @property
    def token(self) -> str:
        return str(self.entity.get("token", ""))


class Held(Version):
    """A claim this caller holds: the entity it wrote and the ETag that write got."""


class Stored(Version):
    """An entity as read (someone else's claim, or a settled one) and the ETag it was read with."""

    @property
    def status(self) -> str:
        return str(self.entity.get("status", ""))

    def in_progress_at(self, now: datetime, in_progress_status: str) -> bool:
        """Whether this is a live claim at `now`: in progress and not yet expired."""
        return self.status == in_progress_status and parse_time(self.entity["expires"]) > now


class Contended(Exception):
    """Other writers changed the key under every claim attempt; `stored` is the winner when known."""

    def __init__(self, stored: Stored | None) -> None:
        self.stored = stored
        super().__init__(
            "claimed concurrently" if stored is not None else "changed under every claim attempt"
        )


class ClaimTable:
    """The claim mechanics on one table. `unavailable` and `lost` are the owner's exception types:
    raised (with the cause chained) when Storage fails, and when a claim changed under its holder."""

    def __init__(self, table: TableClient, *, unavailable: type[Exception], lost: type[Exception]) -> None:
        self._table = table
        self._unavailable = unavailable
        self._lost = lost

    @property
    def table_name(self) -> str:
        return str(self._table.table_name)

    def ensure_table(self) -> None:
        ensure_table(self._table, self._unavailable)

    # --- claiming --------------------------------------------------------------------------------
    def claim(
        self, fresh: Callable[[], Entity], take_over: Callable[[Stored], Entity | None]
    ) -> Held | Stored:
        """Insert `fresh()`; when the key is taken, `take_over(stored)` says what replaces it (None:
        leave it, and it is returned) or raises to refuse. Raises Contended when others keep winning."""
        for _ in range(CLAIM_ROUNDS):
            inserted = self.insert(fresh())
            if inserted is None:
                continue  # released between our insert and our read: insert again
            if isinstance(inserted, Held):
                return inserted
            replacement = take_over(inserted)
            if replacement is None:
                return inserted
            replaced = self.replace(replacement, inserted.etag)
            if isinstance(replaced, Held):
                return replaced
            if replaced is not None and replaced.etag != inserted.etag:
                raise Contended(replaced)
            # released meanwhile, or our replace never arrived: start over
        raise Contended(None)

    def insert(self, entity: Entity) -> Held | Stored | None:
        """Insert if absent: ours (Held), else what holds the key (None: nothing, it vanished).

        A missing table (first use, or deleted under a running process) is created, once.
        """
        try:
            return self._write(entity, etag=None)
        except ResourceNotFoundError:  # an insert meets 404 only when the table itself is missing
            self.ensure_table()
        try:
            return self._write(entity, etag=None)
        except ResourceNotFoundError as exc:
            raise self._unavailable(
                f"cannot write {entity['RowKey']}: table {self.table_name} is missing"
            ) from exc

    def replace(self, entity: Entity, etag: str) -> Held | Stored | None:
        """Replace the version `etag` (a take-over): ours (Held), else what holds the key now."""
        return self._write(entity, etag=etag)

    def _write(self, entity: Entity, *, etag: str | None) -> Held | Stored | None:
        row_key = entity["RowKey"]
        try:
            return Held(entity, write_on_etag(self._table, entity, etag))
        except ResourceNotFoundError:
            if etag is None:
                raise
        except (ResourceExistsError, ResourceModifiedError):
            pass  # another claim's write, or ours stored by a try whose answer was lost
        except AzureError as exc:
            if not outcome_unknown(exc):
                raise self._unavailable(f"cannot write {row_key}") from exc
            logger.warning("claim write answer lost; reading it back", extra={"row_key": row_key})
        stored = self.read(entity["PartitionKey"], row_key)
        if stored is not None and stored.token == entity["token"]:
            return Held(entity, stored.etag)
        return stored

    # --- settling --------------------------------------------------------------------------------
    def settle(self, claim: ClaimKey, changes: Entity) -> None:
        """Merge `changes` (a `status` among them) into the claim, only while it is the version held."""
        entity = {"PartitionKey": claim.partition_key, "RowKey": claim.row_key, **changes}
        try:
            merge_on_etag(self._table, entity, claim.etag)
        except AzureError as exc:
            self._confirm_settled(claim, changes, exc)

    def _confirm_settled(self, claim: ClaimKey, changes: Entity, error: AzureError) -> None:
        """A settling write raised: return if it is stored all the same (its answer was lost, or a
        retry of it met the ETag its first try had changed); raise `lost` or `unavailable` if not."""
        status = changes.get("status", "")
        conflict = isinstance(error, (ResourceModifiedError, ResourceNotFoundError))
        if not conflict and not outcome_unknown(error):
            raise self._unavailable(f"cannot mark {claim.row_key} {status}") from error
        stored = self.read(claim.partition_key, claim.row_key)
        if stored is not None and stored.token == claim.token and _holds(stored, changes):
            return
        if conflict or (stored is not None and stored.etag != claim.etag):
            raise self._lost(f"claim on {claim.row_key} changed before it was marked {status}") from error
        raise self._unavailable(f"cannot mark {claim.row_key} {status}") from error

    def delete(self, claim: ClaimKey) -> None:
        """Delete the claim, only while it is the version held (gone already counts as deleted)."""
        try:
            self._table.delete_entity(
                claim.partition_key,
                claim.row_key,
                etag=claim.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except ResourceNotFoundError:
            return  # gone already: a retry of our delete whose first try was stored
        except ResourceModifiedError as exc:
            raise self._lost(f"claim on {claim.row_key} changed before release") from exc
        except AzureError as exc:
            if not outcome_unknown(exc):
                raise self._unavailable(f"cannot release {claim.row_key}") from exc
            stored = self.read(claim.partition_key, claim.row_key)
            if stored is None:
                return
            if stored.etag != claim.etag:
                raise self._lost(f"claim on {claim.row_key} changed before release") from exc
            raise self._unavailable(f"cannot release {claim.row_key}") from exc

    # --- reading ---------------------------------------------------------------------------------
    def read(self, partition_key: str, row_key: str) -> Stored | None:
        try:
            entity = self._table.get_entity(partition_key, row_key)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise self._unavailable(f"cannot read {row_key}") from exc
        return Stored(entity, str(entity.metadata["etag"]))


def _holds(stored: Stored, changes: Entity) -> bool:
    """Whether `stored` shows the values a settling write set (times aside: Storage rounds them)."""
    return all(
        str(stored.entity.get(name, "")) == str(value)
        for name, value in changes.items()
        if not isinstance(value, datetime)
    )
