"""A VM as `GET …/virtualMachines/{vm}` returns it (no spec example ships in the reference folder;
the shape follows the compute API's VirtualMachine model and recorded GET answers)."""

from __future__ import annotations

from typing import Any

from emulator.estate import VirtualMachine

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
                "storageAccountType": "Premium_LRS",
                "id": _group_scope(vm).replace(vm.resource_group, vm.resource_group.upper())
                + f"/providers/Microsoft.Compute/disks/{disk_name}",
            },
            "deleteOption": "Delete",
            "diskSizeGB": 127 if vm.os_type == "Windows" else 30,
        },
        "dataDisks": [],
        "diskControllerType": "SCSI",
    }


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
