// Event Grid dead-letters with the system topic's own identity (the account takes no shared keys):
// that identity may write blobs into the dead-letter container, nowhere else.
// Deployed into the app's resource group, from each subscription's scope.bicep.

@description('Principal (object) id of the system topic\'s system-assigned identity.')
param topicPrincipalId string

@description('Name of the app\'s storage account.')
param storageAccountName string

@description('Name of the dead-letter container in that account.')
param deadLetterContainerName string

var storageBlobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName

  resource blobService 'blobServices' existing = {
    name: 'default'

    resource deadLetterContainer 'containers' existing = {
      name: deadLetterContainerName
    }
  }
}

resource deadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storageAccount::blobService::deadLetterContainer.id, topicPrincipalId, storageBlobDataContributorRoleId)
  scope: storageAccount::blobService::deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)
    principalId: topicPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output ROLE_ASSIGNMENT_ID string = deadLetterWriter.id
