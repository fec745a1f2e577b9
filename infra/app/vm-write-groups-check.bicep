// Stops a deployment with vmWriteScope 'resourceGroups' (the default) and no group in vmResourceGroupIds,
// which would otherwise succeed and leave the app unable to protect any new VM. ARM's own parameter
// validation gives the error ("… 'vmResourceGroupIds' is not valid. Length of the value should be
// greater than or equal to '1'"): Bicep's fail() would say more, but the parsers the checks use
// (pycep, checkov) do not read it.

@minLength(1)
@description('Resource ids of the resource groups whose new VMs may be protected: set BACKUPWARDEN_VM_RESOURCE_GROUP_IDS, or choose BACKUPWARDEN_VM_WRITE_SCOPE subscription or none.')
param vmResourceGroupIds array

output VM_RESOURCE_GROUP_COUNT int = length(vmResourceGroupIds)
