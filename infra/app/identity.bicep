// The user-assigned managed identity the function app runs as: every Azure call backupwarden makes
// (ARM, Resource Graph, Recovery Services, Logs Ingestion, Log Analytics, Storage) is made with it.
// It outlives the app, so its role assignments survive a redeploy of the app.

@description('Azure region of the identity.')
param location string

@description('Tags put on every resource.')
param tags object = {}

@description('Name of the user-assigned managed identity.')
param name string

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output IDENTITY_RESOURCE_ID string = identity.id
output IDENTITY_CLIENT_ID string = identity.properties.clientId
output IDENTITY_PRINCIPAL_ID string = identity.properties.principalId
