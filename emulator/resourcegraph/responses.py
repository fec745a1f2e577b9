"""Resource Graph handlers: parse the QueryRequest, ask the backend, answer the QueryResponse."""

from __future__ import annotations

from typing import Any

from emulator.core.app import Call, Reply
from emulator.resourcegraph.exceptions import InvalidQueryRequest
from emulator.resourcegraph.models import GraphQuery, ResourceGraphBackend


def query_resources(call: Call) -> Reply:
    request = parse_query_request(call.json_object())
    # Resource Graph's quota is per user; the bearer token stands for the user here.
    user = call.headers.get("authorization", "")
    answer = call.backend(ResourceGraphBackend).query(request, user)
    return Reply(200, answer.body, answer.headers)


def parse_query_request(body: dict[str, Any]) -> GraphQuery:
    query = body.get("query")
    if not isinstance(query, str) or not query.strip():
        raise InvalidQueryRequest("The request body must carry the query text in 'query'.")
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise InvalidQueryRequest("'options' must be an object.")
    facets = body.get("facets") or []
    if not isinstance(facets, list):
        raise InvalidQueryRequest("'facets' must be an array.")
    return GraphQuery(
        query=query,
        subscriptions=_names(body, "subscriptions"),
        management_groups=_names(body, "managementGroups"),
        options=options,
        facets=facets,
    )


def _names(body: dict[str, Any], key: str) -> list[str] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidQueryRequest(f"'{key}' must be an array of strings.")
    return list(value)
