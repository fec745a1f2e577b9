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

@description('Redundancy of the account; empty: Standard_ZRS where the region has availability zones, else Standard_LRS.')
@allowed([
  ''
  'Standard_LRS'
  'Standard_ZRS'
])
param skuName string = ''

@description('Private-network mode: the account refuses public networks; the app comes through the private endpoints of network.bicep.')
param privateNetwork bool = false

// Regions with availability zones ("Azure regions list", Microsoft Learn,
// https://learn.microsoft.com/azure/reliability/regions-list, column "Availability zone support"; source:
// MicrosoftDocs/azure-docs articles/reliability/regions-list.md). ZRS is refused where a region has none.
// The list grows: add a region's programmatic name (`az account list-locations`) when the page lists it.
var zoneRedundantRegions = [
  'australiaeast'
  'brazilsouth'
  'canadacentral'
  'centralindia'
  'centralus'
  'eastasia'
  'eastus'
  'eastus2'
  'francecentral'
  'germanywestcentral'
  'indonesiacentral'
  'israelcentral'
  'italynorth'
  'japaneast'
  'japanwest'
  'koreacentral'
  'mexicocentral'
  'newzealandnorth'
  'northeurope'
  'norwayeast'
  'polandcentral'
  'qatarcentral'
  'southafricanorth'
  'southcentralus'
  'southeastasia'
  'spaincentral'
  'swedencentral'
  'switzerlandnorth'
  'uaenorth'
  'uksouth'
  'westeurope'
  'westus2'
  'westus3'
]
var regionSku = contains(zoneRedundantRegions, location) ? 'Standard_ZRS' : 'Standard_LRS'
var sku = empty(skuName) ? regionSku : skuName

// The Functions host moves a message it gave up on to "<queue>-poison", where the *_poison functions
// listen; the queues are created here rather than on first use, so the identity needs no create rights.
var poisonQueueNames = [for queueName in workQueueNames: '${queueName}-poison']
var queueNames = concat(workQueueNames, poisonQueueNames)
var tableNames = [
  ledgerTableName
  outboxTableName
  alertDedupTableName
]

// Private mode refuses every public network (no IP or virtual network rule) but keeps the public endpoint
// for trusted Azure services: Event Grid delivers VM events to the queue and dead-letters with its
// system-assigned identity, let through a firewall only as a trusted service
// (https://learn.microsoft.com/azure/event-grid/handler-storage-queues); disabling public network access
// would shut that path too. The app reaches the account through the private endpoints (network.bicep).
resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: default action Allow unless privateNetwork: without a virtual network the Flex Consumption app calls from public Azure addresses; each call still needs an Entra ID token (shared keys are off).
  // checkov:skip=CKV_AZURE_59: the public endpoint stays for Event Grid, a trusted service (see networkAcls); with privateNetwork it refuses every public network. Shared-key, SAS and anonymous access are all disabled.
  // checkov:skip=CKV_AZURE_206: ZRS (or LRS where the region has no zones) on purpose: the queues and tables hold the app's working state in the app's own region; a copy in a second region is of no use while the app itself runs in one.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: sku
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    // privateNetwork: see the note above the account.
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: privateNetwork ? 'Deny' : 'Allow'
      bypass: 'AzureServices'
      ipRules: []
      virtualNetworkRules: []
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
