// The Event Grid system topic of one subscription (Microsoft.Resources.Subscriptions) and its event
// subscription delivering every successful VM write in the subscription, and nothing else, to the
// app's vm-events Storage queue (azure-facts §5: filter on the event type and data.operationName,
// never on the subject, because extension writes live under the VM's id). The queue exists before
// the code does, so one provision wires everything; vm_event_queued reads the queue.
//
// A subscription has at most one system topic of type Microsoft.Resources.Subscriptions: with
// existingSystemTopicId the event subscription goes on that topic instead of a new one
// (https://learn.microsoft.com/azure/event-grid/system-topics#lifecycle-of-system-topics). That topic
// needs a system-assigned identity: Event Grid delivers and dead-letters with it, as the account
// takes no shared keys (https://learn.microsoft.com/azure/event-grid/handler-storage-queues).
//
// Event Grid retries a failed delivery for up to 24 hours (30 attempts), then dead-letters the event
// into the app's storage.

@description('Name of the system topic to create; ignored with existingSystemTopicId.')
param systemTopicName string

@description('Resource id of the subscription\'s existing system topic (in this resource group); empty: create one.')
param existingSystemTopicId string = ''

@description('Tags put on every resource.')
param tags object = {}

@description('Subscription id of the app\'s storage account.')
param storageSubscriptionId string

@description('Resource group of the app\'s storage account.')
param storageResourceGroupName string

@description('Name of the app\'s storage account.')
param storageAccountName string

@description('Queue the VM write events are delivered to.')
param vmEventQueueName string

@description('Blob container for dead-lettered events.')
param deadLetterContainerName string

// What reaches the queue: the event type and operation below, evaluated by Event Grid.
var vmWriteEventTypes = [
  'Microsoft.Resources.ResourceWriteSuccess'
]
var vmWriteOperations = [
  'Microsoft.Compute/virtualMachines/write'
]
var reuseTopic = !empty(existingSystemTopicId)
var storageAccountId = resourceId(storageSubscriptionId, storageResourceGroupName, 'Microsoft.Storage/storageAccounts', storageAccountName)
// one event subscription per environment (its queue), so several environments can share a topic
var eventSubscriptionName = 'backupwarden-vm-writes-${uniqueString(storageAccountId, vmEventQueueName)}'

resource newTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = if (!reuseTopic) {
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

resource existingTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = if (reuseTopic) {
  name: last(split(existingSystemTopicId, '/'))
}

var topicPrincipalId = reuseTopic ? existingTopic.identity.principalId : newTopic.identity.principalId

module deliveryAccess '../app/event-delivery-access.bicep' = {
  name: 'event-delivery-access-${uniqueString(subscription().id, storageAccountId)}'
  scope: resourceGroup(storageSubscriptionId, storageResourceGroupName)
  params: {
    topicPrincipalId: topicPrincipalId
    storageAccountName: storageAccountName
    vmEventQueueName: vmEventQueueName
  }
}

module deadLetterAccess '../app/dead-letter-access.bicep' = {
  name: 'dead-letter-access-${uniqueString(subscription().id, storageAccountId)}'
  scope: resourceGroup(storageSubscriptionId, storageResourceGroupName)
  params: {
    topicPrincipalId: topicPrincipalId
    storageAccountName: storageAccountName
    deadLetterContainerName: deadLetterContainerName
  }
}

resource vmWritesToNewTopic 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (!reuseTopic) {
  parent: newTopic
  name: eventSubscriptionName
  properties: eventSubscription
  dependsOn: [
    deliveryAccess
    deadLetterAccess
  ]
}

resource vmWritesToExistingTopic 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (reuseTopic) {
  parent: existingTopic
  name: eventSubscriptionName
  properties: eventSubscription
  dependsOn: [
    deliveryAccess
    deadLetterAccess
  ]
}

// Delivered as Event Grid schema, one event per queue message
// (https://learn.microsoft.com/azure/event-grid/handler-storage-queues).
var eventSubscription = {
  eventDeliverySchema: 'EventGridSchema'
  deliveryWithResourceIdentity: {
    identity: {
      type: 'SystemAssigned'
    }
    destination: {
      endpointType: 'StorageQueue'
      properties: {
        resourceId: storageAccountId
        queueName: vmEventQueueName
        // -1: the message never expires; protection waits for the app, however long it is down
        queueMessageTimeToLiveInSeconds: -1
      }
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
      {
        operatorType: 'StringIn'
        key: 'data.status'
        values: [
          'Succeeded'
        ]
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
        resourceId: storageAccountId
        blobContainerName: deadLetterContainerName
      }
    }
  }
}

output SYSTEM_TOPIC_RESOURCE_ID string = reuseTopic ? existingTopic.id : newTopic.id
output SYSTEM_TOPIC_PRINCIPAL_ID string = topicPrincipalId
