// Everything one subscription in scope needs so backupwarden can act in it (azure-facts §8), deployed
// once per subscription: main.bicep deploys it to its own subscription and to every id in
// BACKUPWARDEN_ADDITIONAL_SUBSCRIPTIONS; an owner of another subscription can deploy it alone
// (docs/deploy.md, "More subscriptions"):
//   - Reader on the subscription: Resource Graph sees only what the identity can read, and the sweep
//     reads vaults, items, jobs and VMs;
//   - Backup Operator on the resource groups of the vaults (or on the subscription): enable protection,
//     back up now; it cannot delete backups or vaults;
//   - where new VMs are to be protected: a custom role with just Microsoft.Compute/virtualMachines/read
//     and /write (or Virtual Machine Contributor, by parameter), on the subscription or on given
//     resource groups: Azure Backup checks the VM write permission when protection is enabled;
//   - the Event Grid system topic of the subscription (or the one it has already: a subscription holds
//     at most one of type Microsoft.Resources.Subscriptions) and its subscription to the vm-events queue.

targetScope = 'subscription'

@description('Principal (object) id of the app\'s managed identity.')
param principalId string

@description('Azure region of the resource group holding the system topic (the topic itself is global).')
param location string

@description('Tags put on every resource.')
param tags object = {}

@description('Resource group of the system topic.')
param eventsResourceGroupName string

@description('Whether to create that resource group (false: it exists, e.g. the app\'s own group).')
param createEventsResourceGroup bool = true

@description('Name of the system topic created when existingSystemTopicId is empty.')
param systemTopicName string = 'backupwarden-subscription-events'

@description('Resource id of the subscription\'s existing system topic of type Microsoft.Resources.Subscriptions (with a system-assigned identity); empty: create one in eventsResourceGroupName.')
param existingSystemTopicId string = ''

@description('Where Backup Operator is assigned: the vaults\' resource groups (vaultResourceGroupIds), or the whole subscription.')
@allowed([
  'resourceGroups'
  'subscription'
])
param backupOperatorScope string = 'resourceGroups'

@description('Resource ids of the resource groups holding the Recovery Services vaults, in any subscription in scope; each subscription takes its own.')
param vaultResourceGroupIds array = []

@description('Where new VMs may get protection enabled (the VM write permission): the whole subscription, the resource groups in vmResourceGroupIds, or nowhere (only VMs already protected are looked after).')
@allowed([
  'subscription'
  'resourceGroups'
  'none'
])
param vmWriteScope string = 'subscription'

@description('Resource ids of the resource groups whose VMs may be protected (vmWriteScope resourceGroups), in any subscription in scope.')
param vmResourceGroupIds array = []

@description('The role that carries the VM write permission: a custom role with only virtualMachines/read and /write, or the built-in Virtual Machine Contributor.')
@allowed([
  'custom'
  'VirtualMachineContributor'
])
param vmWriteRole string = 'custom'

@description('Resource id of the app\'s storage account (events are queued and dead-lettered there).')
param storageAccountResourceId string

@description('Queue of the app\'s storage account the VM write events are delivered to.')
param vmEventQueueName string

@description('Blob container for dead-lettered events.')
param deadLetterContainerName string

var readerRoleId = 'acdd72a7-3385-48ef-bd42-f606fba81ae7'
var backupOperatorRoleId = '00c29273-979b-4161-815c-10b084fb9324'
var virtualMachineContributorRoleId = '9980e02c-c2be-4d73-94e8-173b1dc7cf3c'

var backupOperatorRoleDefinitionId = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', backupOperatorRoleId)
var useCustomVmRole = vmWriteScope != 'none' && vmWriteRole == 'custom'
var vmWriteRoleDefinitionId = useCustomVmRole ? vmBackupEnablerRole.id : subscriptionResourceId('Microsoft.Authorization/roleDefinitions', virtualMachineContributorRoleId)
var storageIdParts = split(storageAccountResourceId, '/')

resource readerAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, principalId, readerRoleId)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', readerRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'backupwarden: Resource Graph and ARM reads of vaults, protected items, jobs and VMs.'
  }
}

resource backupOperatorOnSubscription 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (backupOperatorScope == 'subscription') {
  name: guid(subscription().id, principalId, backupOperatorRoleId)
  properties: {
    roleDefinitionId: backupOperatorRoleDefinitionId
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'backupwarden: enable protection and back up now, with every vault of the subscription.'
  }
}

module backupOperatorOnVaultGroups 'group-role.bicep' = [for groupId in vaultResourceGroupIds: if (backupOperatorScope == 'resourceGroups' && toLower(split(groupId, '/')[2]) == toLower(subscription().subscriptionId)) {
  name: 'backupwarden-backup-operator-${uniqueString(groupId)}'
  scope: resourceGroup(split(groupId, '/')[4])
  params: {
    principalId: principalId
    roleDefinitionId: backupOperatorRoleDefinitionId
    assignmentDescription: 'backupwarden: enable protection and back up now, with the vaults of this group.'
  }
}]

resource vmBackupEnablerRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (useCustomVmRole) {
  name: guid(subscription().id, 'backupwarden-vm-backup-enabler')
  properties: {
    roleName: 'backupwarden VM backup enabler (${subscription().subscriptionId})'
    description: 'Read and write virtual machines: what Azure Backup checks when protection of a VM is enabled.'
    type: 'CustomRole'
    permissions: [
      {
        actions: [
          'Microsoft.Compute/virtualMachines/read'
          'Microsoft.Compute/virtualMachines/write'
        ]
        notActions: []
      }
    ]
    assignableScopes: [
      subscription().id
    ]
  }
}

resource vmWriteOnSubscription 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (vmWriteScope == 'subscription') {
  name: guid(subscription().id, principalId, vmWriteRoleDefinitionId)
  properties: {
    roleDefinitionId: vmWriteRoleDefinitionId
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'backupwarden: enable backup of new VMs in this subscription.'
  }
}

module vmWriteOnGroups 'group-role.bicep' = [for groupId in vmResourceGroupIds: if (vmWriteScope == 'resourceGroups' && toLower(split(groupId, '/')[2]) == toLower(subscription().subscriptionId)) {
  name: 'backupwarden-vm-write-${uniqueString(groupId)}'
  scope: resourceGroup(split(groupId, '/')[4])
  params: {
    principalId: principalId
    roleDefinitionId: vmWriteRoleDefinitionId
    assignmentDescription: 'backupwarden: enable backup of new VMs in this group.'
  }
}]

resource eventsGroup 'Microsoft.Resources/resourceGroups@2024-03-01' = if (createEventsResourceGroup && empty(existingSystemTopicId)) {
  name: eventsResourceGroupName
  location: location
  tags: tags
}

// A reused topic may sit in any resource group of this subscription: the event subscription goes there.
// The name is per app (principal), so environments sharing a topic's group do not overwrite each other.
module events 'events.bicep' = {
  name: 'backupwarden-events-${uniqueString(subscription().id, principalId)}'
  scope: resourceGroup(empty(existingSystemTopicId) ? eventsResourceGroupName : split(existingSystemTopicId, '/')[4])
  params: {
    systemTopicName: systemTopicName
    existingSystemTopicId: existingSystemTopicId
    tags: tags
    storageSubscriptionId: storageIdParts[2]
    storageResourceGroupName: storageIdParts[4]
    storageAccountName: last(storageIdParts)
    vmEventQueueName: vmEventQueueName
    deadLetterContainerName: deadLetterContainerName
  }
  dependsOn: [
    eventsGroup
  ]
}

output SYSTEM_TOPIC_RESOURCE_ID string = events.outputs.SYSTEM_TOPIC_RESOURCE_ID
