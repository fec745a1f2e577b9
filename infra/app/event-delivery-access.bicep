// Event Grid delivers VM write events with the system topic's own identity (the account takes no
// shared keys): that identity may add messages to the vm-events queue, nowhere else.
// Deployed into the app's resource group, from each subscription's events.bicep.

@description('Principal (object) id of the system topic\'s system-assigned identity.')
param topicPrincipalId string

@description('Name of the app\'s storage account.')
param storageAccountName string

@description('Name of the queue the events are delivered to.')
param vmEventQueueName string

// Storage Queue Data Message Sender: add messages to a queue, nothing else
// (https://learn.microsoft.com/azure/role-based-access-control/built-in-roles/storage#storage-queue-data-message-sender)
var storageQueueDataMessageSenderRoleId = 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName

  resource queueService 'queueServices' existing = {
    name: 'default'

    resource vmEventQueue 'queues' existing = {
      name: vmEventQueueName
    }
  }
}

resource queueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storageAccount::queueService::vmEventQueue.id, topicPrincipalId, storageQueueDataMessageSenderRoleId)
  scope: storageAccount::queueService::vmEventQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataMessageSenderRoleId)
    principalId: topicPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output ROLE_ASSIGNMENT_ID string = queueSender.id
