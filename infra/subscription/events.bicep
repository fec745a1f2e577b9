// The Event Grid system topic of one subscription (Microsoft.Resources.Subscriptions) and its event
// subscription to the app's vm_written function: every successful VM write in the subscription, and
// nothing else (azure-facts §5: filter on the event type and data.operationName, never on the subject,
// because extension writes live under the VM's id).
//
// Event Grid retries a failed delivery for up to 24 hours (30 attempts), then dead-letters the event
// into the app's storage with the topic's own identity. The event subscription needs vm_written to
// exist, so it is created by the provision that follows the first deploy (`functionsDeployed`).

@description('Name of the system topic (one per subscription and source).')
param systemTopicName string

@description('Tags put on every resource.')
param tags object = {}

@description('Resource id of the function app (in any subscription).')
param functionAppResourceId string

@description('Whether the app\'s code is deployed (vm_written exists).')
param functionsDeployed bool

@description('Subscription id of the app\'s storage account.')
param storageSubscriptionId string

@description('Resource group of the app\'s storage account.')
param storageResourceGroupName string

@description('Name of the app\'s storage account.')
param storageAccountName string

@description('Blob container for dead-lettered events.')
param deadLetterContainerName string

// What reaches vm_written: the event type and operation below, evaluated by Event Grid.
var vmWriteEventTypes = [
  'Microsoft.Resources.ResourceWriteSuccess'
]
var vmWriteOperations = [
  'Microsoft.Compute/virtualMachines/write'
]
var vmWrittenFunctionName = 'vm_written'

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: systemTopicName
  location: 'global'
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: subscription().id
    topicType: 'Microsoft.Resources.Subscriptions'
  }
}

module deadLetterAccess '../app/dead-letter-access.bicep' = {
  name: 'dead-letter-access-${uniqueString(systemTopic.id)}'
  scope: resourceGroup(storageSubscriptionId, storageResourceGroupName)
  params: {
    topicPrincipalId: systemTopic.identity.principalId
    storageAccountName: storageAccountName
    deadLetterContainerName: deadLetterContainerName
  }
}

resource vmWrites 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (functionsDeployed) {
  parent: systemTopic
  name: 'backupwarden-vm-writes'
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppResourceId}/functions/${vmWrittenFunctionName}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: vmWriteEventTypes
      advancedFilters: [
        {
          operatorType: 'StringIn'
          key: 'data.operationName'
          values: vmWriteOperations
        }
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: resourceId(storageSubscriptionId, storageResourceGroupName, 'Microsoft.Storage/storageAccounts', storageAccountName)
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
  dependsOn: [
    deadLetterAccess
  ]
}

output SYSTEM_TOPIC_RESOURCE_ID string = systemTopic.id
output SYSTEM_TOPIC_PRINCIPAL_ID string = systemTopic.identity.principalId
