"""A VM as `GET …/virtualMachines/{vm}` returns it (no spec example ships in the reference folder;
the shape follows the compute API's VirtualMachine model and recorded GET answers)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from emulator.estate import VirtualMachine

PREMIUM_V2 = "PremiumV2_LRS"
ULTRA_SSD = "UltraSSD_LRS"
# compute StorageAccountTypes; Premium SSD v2 and Ultra disks can only be data disks
DISK_TYPES = frozenset(
    {
        "Standard_LRS",
        "Premium_LRS",
        "StandardSSD_LRS",
        "UltraSSD_LRS",
        "Premium_ZRS",
        "StandardSSD_ZRS",
        PREMIUM_V2,
    }
)
OS_DISK_TYPES = DISK_TYPES - {PREMIUM_V2, ULTRA_SSD}
SECURITY_TYPES = frozenset({"Standard", "TrustedLaunch", "ConfidentialVM"})  # compute SecurityTypes
VM_AGENT_STATUSES = frozenset({"Ready", "Not Ready"})
# Agent versions a current image reports (WALinuxAgent / Windows Guest Agent)
_AGENT_VERSIONS = {"Linux": "2.12.0.4", "Windows": "2.7.41491.1152"}

_IMAGES = {
    "Linux": {
        "publisher": "Canonical",
        "offer": "ubuntu-24_04-lts",
        "sku": "server",
        "version": "latest",
        "exactVersion": "24.04.202411030",
    },
    "Windows": {
        "publisher": "MicrosoftWindowsServer",
        "offer": "WindowsServer",
        "sku": "2022-datacenter-azure-edition",
        "version": "latest",
        "exactVersion": "20348.2849.241106",
    },
}


def vm_resource(vm: VirtualMachine) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "hardwareProfile": {"vmSize": vm.size},
        "provisioningState": vm.provisioning_state,
        "vmId": vm.vm_id,
        "storageProfile": _storage_profile(vm),
        "osProfile": _os_profile(vm),
        "networkProfile": {
            "networkInterfaces": [
                {
                    "id": _group_scope(vm) + f"/providers/Microsoft.Network/networkInterfaces/{vm.name}-nic",
                    "properties": {"deleteOption": "Delete"},
                }
            ]
        },
        "diagnosticsProfile": {"bootDiagnostics": {"enabled": True}},
    }
    if vm.security_type is not None:
        properties["securityProfile"] = _security_profile(vm.security_type)
    if ULTRA_SSD in vm.data_disk_types:
        # a VM can attach Ultra disks only with this capability on (VirtualMachine.additionalCapabilities)
        properties["additionalCapabilities"] = {"ultraSSDEnabled": True}
    if vm.created is not None:
        properties["timeCreated"] = vm.created.isoformat()
    return {
        "name": vm.name,
        "id": vm.id,
        "type": "Microsoft.Compute/virtualMachines",
        "location": vm.location,
        "tags": dict(vm.tags),
        "properties": properties,
    }


def _storage_profile(vm: VirtualMachine) -> dict[str, Any]:
    disk_name = f"{vm.name}_OsDisk_1_{vm.vm_id.replace('-', '')}"
    return {
        "imageReference": dict(_IMAGES.get(vm.os_type, _IMAGES["Linux"])),
        "osDisk": {
            "osType": vm.os_type,
            "name": disk_name,
            "createOption": "FromImage",
            "caching": "ReadWrite",
            "managedDisk": {
                "storageAccountType": vm.os_disk_type,
                "id": _group_scope(vm).replace(vm.resource_group, vm.resource_group.upper())
                + f"/providers/Microsoft.Compute/disks/{disk_name}",
            },
            "deleteOption": "Delete",
            "diskSizeGB": 127 if vm.os_type == "Windows" else 30,
        },
        "dataDisks": [_data_disk(vm, lun, disk_type) for lun, disk_type in enumerate(vm.data_disk_types)],
        "diskControllerType": "SCSI",
    }


def _data_disk(vm: VirtualMachine, lun: int, disk_type: str) -> dict[str, Any]:
    """A managed data disk as the compute DataDisk model spells it."""
    name = f"{vm.name}_DataDisk_{lun}"
    return {
        "lun": lun,
        "name": name,
        "createOption": "Empty",
        # Premium SSD v2 and Ultra disks support no host caching
        "caching": "None" if disk_type in (PREMIUM_V2, ULTRA_SSD) else "ReadOnly",
        "managedDisk": {
            "storageAccountType": disk_type,
            "id": _group_scope(vm) + f"/providers/Microsoft.Compute/disks/{name}",
        },
        "deleteOption": "Detach",
        "diskSizeGB": 128,
        "toBeDetached": False,
    }


def _security_profile(security_type: str) -> dict[str, Any]:
    """securityProfile (compute SecurityProfile): Trusted Launch and Confidential VMs run with
    Secure Boot and a vTPM (uefiSettings); a Standard VM names its type only."""
    if security_type == "Standard":
        return {"securityType": "Standard"}
    return {"uefiSettings": {"secureBootEnabled": True, "vTpmEnabled": True}, "securityType": security_type}


def vm_instance_view(vm: VirtualMachine, now: datetime) -> dict[str, Any]:
    """`GET …/virtualMachines/{vm}/instanceView` (compute VirtualMachineInstanceView). The VM
    agent's status reads as Azure reports it: "Ready" (ProvisioningState/succeeded, Info) or, for an
    unresponsive agent, "Not Ready" (ProvisioningState/Unavailable, Warning, "VM Agent is
    unresponsive.", version "Unknown"), as instance views captured from real VMs show."""
    moment = now.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if vm.vm_agent_status == "Ready":
        agent_status = {
            "code": "ProvisioningState/succeeded",
            "level": "Info",
            "displayStatus": "Ready",
            "message": "GuestAgent is running and processing the extensions.",
            "time": moment,
        }
        agent_version = _AGENT_VERSIONS.get(vm.os_type, _AGENT_VERSIONS["Linux"])
    else:
        agent_status = {
            "code": "ProvisioningState/Unavailable",
            "level": "Warning",
            "displayStatus": "Not Ready",
            "message": "VM Agent is unresponsive.",
            "time": moment,
        }
        agent_version = "Unknown"
    state = vm.provisioning_state
    provisioning = {
        "code": f"ProvisioningState/{state.lower()}",
        "level": "Error" if state == "Failed" else "Info",
        "displayStatus": f"Provisioning {state.lower()}",
        "time": moment,
    }
    storage = _storage_profile(vm)
    disk_names = [storage["osDisk"]["name"], *(disk["name"] for disk in storage["dataDisks"])]
    view: dict[str, Any] = {
        "computerName": vm.name,
        "osName": "ubuntu" if vm.os_type == "Linux" else "Windows Server 2022 Datacenter Azure Edition",
        "vmAgent": {"vmAgentVersion": agent_version, "statuses": [agent_status], "extensionHandlers": []},
        "disks": [{"name": name, "statuses": [dict(provisioning)]} for name in disk_names],
        "hyperVGeneration": "V2" if vm.security_type in ("TrustedLaunch", "ConfidentialVM") else "V1",
        "statuses": [
            provisioning,
            {"code": "PowerState/running", "level": "Info", "displayStatus": "VM running"},
        ],
    }
    return view


def _os_profile(vm: VirtualMachine) -> dict[str, Any]:
    profile: dict[str, Any] = {
        "computerName": vm.name,
        "adminUsername": "azureuser",
        "secrets": [],
        "allowExtensionOperations": True,
        "requireGuestProvisionSignal": True,
    }
    if vm.os_type == "Windows":
        profile["windowsConfiguration"] = {
            "provisionVMAgent": True,
            "enableAutomaticUpdates": True,
            "patchSettings": {"patchMode": "AutomaticByOS", "assessmentMode": "ImageDefault"},
            "enableVMAgentPlatformUpdates": False,
        }
    else:
        profile["linuxConfiguration"] = {
            "disablePasswordAuthentication": True,
            "provisionVMAgent": True,
            "patchSettings": {"patchMode": "ImageDefault", "assessmentMode": "ImageDefault"},
        }
    return profile


def _group_scope(vm: VirtualMachine) -> str:
    return f"/subscriptions/{vm.subscription_id}/resourceGroups/{vm.resource_group}"
