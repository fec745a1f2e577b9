"""Resource Graph queries, paged with $skipToken and batched under ARG's subscription limit."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from azure.core.exceptions import AzureError
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

from backupwarden.adapters.azure.errors import AzureCallError

SUBSCRIPTIONS_PER_QUERY = 250  # Resource Graph accepts under 300 per request
PAGE_SIZE = 1000


def query_rows(client: ResourceGraphClient, query: str, subscriptions: list[str]) -> Iterator[dict[str, Any]]:
    """Every row of `query` over `subscriptions`, following $skipToken until the last page."""
    for start in range(0, len(subscriptions), SUBSCRIPTIONS_PER_QUERY):
        batch = subscriptions[start : start + SUBSCRIPTIONS_PER_QUERY]
        skip_token: str | None = None
        while True:
            options = QueryRequestOptions(top=PAGE_SIZE, skip_token=skip_token, result_format="objectArray")
            try:
                page = client.resources(QueryRequest(subscriptions=batch, query=query, options=options))
            except AzureError as exc:
                raise AzureCallError.from_sdk("resource graph query", exc) from exc
            if not isinstance(page.data, list):  # objectArray was asked for: one mapping per row
                raise AzureCallError(
                    "resource graph query", "UnexpectedResultFormat", "rows were not an array"
                )
            yield from page.data
            skip_token = page.skip_token
            if not skip_token:
                if str(page.result_truncated).lower() == "true":
                    raise AzureCallError(
                        "resource graph query",
                        "ResultTruncated",
                        "the query result was truncated and cannot be paged; project an id and order by it",
                    )
                break
