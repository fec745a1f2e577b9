"""Errors of checkPolicyRestrictions, in ARM's `{"error": {"code", "message"}}` shape (the spec's
`default` answer is policyMetadata.json's ErrorResponse)."""

from __future__ import annotations

from emulator.core.errors import BadRequest


class InvalidCheckRestrictionsRequest(BadRequest):
    """A body that is not a CheckRestrictionsRequest; the message names the field.

    ARM's code for request content it cannot use: no recording shows the code PolicyInsights itself
    answers, so the generic one stands in."""

    code = "InvalidRequestContent"
