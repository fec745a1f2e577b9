// The function app's storage: the Functions host (AzureWebJobsStorage, reached by identity only), the
// Flex Consumption deployment package, the queues and tables backupwarden uses, and the container where
// Event Grid parks VM events it could not deliver.
//
// Shared keys are disabled: every caller (the app, the Functions host, Event Grid's dead-lettering)
// authenticates with Entra ID and holds a data role on this account (infra/app/rbac.bicep,
// infra/app/dead-letter-access.bicep).

@description('Azure region of the account.')
param location string

@description('Tags put on every resource.')
param tags object = {}

@description('Storage account name (3-24 lower-case letters or digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Blob container holding the Flex Consumption deployment package.')
param deploymentContainerName string

@description('Blob container where Event Grid dead-letters VM events it could not deliver.')
param deadLetterContainerName string

@description('Queues the functions take work from (BACKUPWARDEN_PROTECT_QUEUE, BACKUPWARDEN_REMEDIATION_QUEUE, BACKUPWARDEN_SWEEP_QUEUE); each gets its "-poison" twin.')
param workQueueNames array

@description('Table of the idempotency ledger (BACKUPWARDEN_LEDGER_TABLE).')
param ledgerTableName string

@description('Table where records wait for a successful upload (BACKUPWARDEN_OUTBOX_TABLE).')
param outboxTableName string

@description('Table where alert_webhook records the notifications it took in (BACKUPWARDEN_ALERT_DEDUP_TABLE).')
param alertDedupTableName string

// The Functions host moves a message it gave up on to "<queue>-poison", where the *_poison functions
// listen; the queues are created here rather than on first use, so the identity needs no create rights.
var poisonQueueNames = [for queueName in workQueueNames: '${queueName}-poison']
var queueNames = concat(workQueueNames, poisonQueueNames)
var tableNames = [
  ledgerTableName
  outboxTableName
  alertDedupTableName
]

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: default action Allow: the Flex Consumption app runs without a virtual network, so its calls come from public Azure addresses; each one still needs an Entra ID token (shared keys are off).
  // checkov:skip=CKV_AZURE_59: public network access stays on for the same reason (no virtual network, no private endpoint); shared-key, SAS and anonymous access are all disabled.
  // checkov:skip=CKV_AZURE_206: zone-redundant (ZRS) on purpose: the queues and tables hold the app's working state in the app's own region; a copy in a second region is of no use while the app itself runs in one.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_ZRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for queueName in queueNames: {
  parent: queueService
  name: queueName
}]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [for tableName in tableNames: {
  parent: tableService
  name: tableName
}]

output STORAGE_ACCOUNT_NAME string = account.name
output STORAGE_ACCOUNT_RESOURCE_ID string = account.id
output STORAGE_BLOB_ENDPOINT string = account.properties.primaryEndpoints.blob
output STORAGE_QUEUE_ENDPOINT string = account.properties.primaryEndpoints.queue
output STORAGE_TABLE_ENDPOINT string = account.properties.primaryEndpoints.table
output DEPLOYMENT_CONTAINER_URL string = '${account.properties.primaryEndpoints.blob}${deploymentContainer.name}'
output DEAD_LETTER_CONTAINER_NAME string = deadLetterContainer.name
