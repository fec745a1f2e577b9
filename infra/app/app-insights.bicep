// Application Insights for the Functions host's telemetry, workspace-based (same workspace as the
// outcome tables) and identity-only: local (instrumentation-key) authentication is off, so the host
// sends with its managed identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING), which holds
// Monitoring Metrics Publisher on this component (infra/app/rbac.bicep).

@description('Azure region of the component.')
param location string

@description('Tags put on every resource.')
param tags object = {}

@description('Name of the Application Insights component.')
param name string

@description('Resource id of the Log Analytics workspace the telemetry is stored in.')
param workspaceResourceId string

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: name
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspaceResourceId
    DisableLocalAuth: true
    IngestionMode: 'LogAnalytics'
    publicNetworkAccessForIngestion: 'Enabled'
    publicNetworkAccessForQuery: 'Enabled'
  }
}

output APPLICATIONINSIGHTS_NAME string = appInsights.name
output APPLICATIONINSIGHTS_RESOURCE_ID string = appInsights.id
output APPLICATIONINSIGHTS_CONNECTION_STRING string = appInsights.properties.ConnectionString
