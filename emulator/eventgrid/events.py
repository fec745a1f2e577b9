"""Resource events of a subscription system topic, in the Event Grid and CloudEvents 1.0 schemas.

Shapes follow the spec examples in
specification/eventgrid/data-plane/Microsoft.Resources/stable/2018-01-01/examples/ (with the
`httpRequest` block the delete example and the schema carry). The caller is a fixed user
principal, so `claims` holds every claim key of the examples.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

WRITE_SUCCESS = "Microsoft.Resources.ResourceWriteSuccess"
WRITE_FAILURE = "Microsoft.Resources.ResourceWriteFailure"
DELETE_SUCCESS = "Microsoft.Resources.ResourceDeleteSuccess"

_CALLER_OBJECT_ID = "5e1d6f4a-3b2c-4d8e-9f10-a1b2c3d4e5f6"
_CALLER_UPN = "operator@contoso.example"
_CALLER_IP = "203.0.113.10"
_CALLER_DEVICE_ID = "9d4c2f0e-6b1a-4e3d-8c7b-2a1f0e9d8c7b"
_CALLER_NAME_IDENTIFIER = "emulatorNameIdentifier0000000000000"
_AZURE_CLI_APP_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
_CONTRIBUTOR_ROLE_ID = "b24988ac-6180-42a0-ab88-20f7382dd24c"
_ARM_API_VERSION = "2024-07-01"


@dataclass(frozen=True)
class ResourceOperation:
    """One ARM operation on a resource, as the subscription's system topic reports it."""

    event_type: str
    resource_id: str
    operation_name: str  # e.g. "Microsoft.Compute/virtualMachines/write"
    http_method: str  # "PUT" | "PATCH" | "DELETE"
    status: str  # "Succeeded" | "Failed"
    subscription_id: str
    tenant_id: str
    correlation_id: str

    @property
    def resource_provider(self) -> str:
        return self.operation_name.split("/", 1)[0]

    @property
    def topic(self) -> str:
        return f"/subscriptions/{self.subscription_id}"


def event_grid_event(op: ResourceOperation, event_id: str, event_time: datetime) -> dict[str, Any]:
    return {
        "subject": op.resource_id,
        "eventType": op.event_type,
        "eventTime": format_event_time(event_time),
        "id": event_id,
        "data": event_data(op, event_time),
        "dataVersion": "2",
        "metadataVersion": "1",
        "topic": op.topic,
    }


def cloud_event(op: ResourceOperation, event_id: str, event_time: datetime) -> dict[str, Any]:
    return {
        "source": op.topic,
        "subject": op.resource_id,
        "type": op.event_type,
        "time": format_event_time(event_time),
        "id": event_id,
        "data": event_data(op, event_time),
        "specversion": "1.0",
    }


def event_data(op: ResourceOperation, event_time: datetime) -> dict[str, Any]:
    return {
        "authorization": {
            "scope": op.resource_id,
            "action": op.operation_name,
            "evidence": {
                "role": "Contributor",
                "roleAssignmentScope": op.topic,
                "roleAssignmentId": "0b6f1a4e8d2c4b7f9e3a5c1d7f2b8e4a",
                "roleDefinitionId": _CONTRIBUTOR_ROLE_ID.replace("-", ""),
                "principalId": _CALLER_OBJECT_ID.replace("-", ""),
                "principalType": "User",
            },
        },
        "claims": _claims(op.tenant_id, event_time),
        "correlationId": op.correlation_id,
        "httpRequest": {
            "clientRequestId": op.correlation_id,
            "clientIpAddress": _CALLER_IP,
            "method": op.http_method,
            "url": f"https://management.azure.com{op.resource_id}?api-version={_ARM_API_VERSION}",
        },
        "resourceProvider": op.resource_provider,
        "resourceUri": op.resource_id,
        "operationName": op.operation_name,
        "status": op.status,
        "subscriptionId": op.subscription_id,
        "tenantId": op.tenant_id,
    }


def _claims(tenant_id: str, event_time: datetime) -> dict[str, str]:
    issued = int((event_time - timedelta(minutes=5)).timestamp())
    return {
        "aud": "https://management.core.windows.net/",
        "iss": f"https://sts.windows.net/{tenant_id}/",
        "iat": str(issued),
        "nbf": str(issued),
        "exp": str(issued + 3900),
        "_claim_names": '{"groups":"src1"}',
        "_claim_sources": (
            '{"src1":{"endpoint":"https://graph.windows.net/'
            f'{tenant_id}/users/{_CALLER_OBJECT_ID}/getMemberObjects"}}}}'
        ),
        "http://schemas.microsoft.com/claims/authnclassreference": "1",
        "aio": "AVQAq/8TAAAAemulatorTokenInformationOnly",
        "http://schemas.microsoft.com/claims/authnmethodsreferences": "pwd,mfa",
        "appid": _AZURE_CLI_APP_ID,
        "appidacr": "0",
        "http://schemas.microsoft.com/2012/01/devicecontext/claims/identifier": _CALLER_DEVICE_ID,
        "e_exp": "262800",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname": "Operator",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname": "Emulator",
        "ipaddr": _CALLER_IP,
        "name": "Emulator Operator",
        "http://schemas.microsoft.com/identity/claims/objectidentifier": _CALLER_OBJECT_ID,
        "onprem_sid": "S-1-5-21-2127521184-1604012920-1887927527-1234567",
        "puid": "10037FFE80000000",
        "http://schemas.microsoft.com/identity/claims/scope": "user_impersonation",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier": _CALLER_NAME_IDENTIFIER,
        "http://schemas.microsoft.com/identity/claims/tenantid": tenant_id,
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name": _CALLER_UPN,
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn": _CALLER_UPN,
        "uti": "emulatorUti0000000000",
        "ver": "1.0",
    }


def format_event_time(moment: datetime) -> str:
    """Seven fractional digits and a `Z`, as Event Grid writes `eventTime`."""
    utc = moment.astimezone(UTC) if moment.tzinfo else moment
    return f"{utc.strftime('%Y-%m-%dT%H:%M:%S.%f')}0Z"
