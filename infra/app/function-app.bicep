// The function app on Flex Consumption (Python 3.11 or 3.12) and its plan. It runs as a user-assigned managed
// identity and holds no secret: the Functions host reaches storage by identity (AzureWebJobsStorage__*),
// Application Insights by identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING), and the code gets its
// tokens from DefaultAzureCredential with AZURE_CLIENT_ID naming the identity.
//
// `appSettings` carries backupwarden's own settings (main.bicep); this module adds the host's plumbing
// and writes both as the site's app settings.

@description('Azure region of the plan and the app.')
param location string

@description('Tags put on every resource.')
param tags object = {}

@description('Name of the function app.')
param name string

@description('Name of the Flex Consumption plan.')
param planName string

@description('The azd service (azure.yaml) deployed to this app.')
param serviceName string

@description('Resource id of the user-assigned managed identity the app runs as.')
param identityResourceId string

@description('Client id of that identity.')
param identityClientId string

@description('Name of the storage account of the Functions host.')
param storageAccountName string

@description('Blob endpoint of that account (https://NAME.blob.core.windows.net/).')
param storageBlobEndpoint string

@description('Queue endpoint of that account.')
param storageQueueEndpoint string

@description('Table endpoint of that account.')
param storageTableEndpoint string

@description('URL of the blob container the deployment package is uploaded to.')
param deploymentContainerUrl string

@description('Connection string of Application Insights (it holds no secret: local auth is off).')
param applicationInsightsConnectionString string

@description('backupwarden\'s settings (backupwarden/settings.py), as app settings.')
param appSettings object

@description('Most instances the app scales out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory of each instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

// Flex Consumption runs Python 3.11 and 3.12 (`az functionapp list-flexconsumption-runtimes`;
// https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan); the code is tested on both.
@description('Python version of the app.')
@allowed([
  '3.11'
  '3.12'
])
param runtimeVersion string = '3.11'

@description('Subnet the app integrates with (network.bicep, private-network mode); empty: no virtual network.')
param virtualNetworkSubnetId string = ''

// How the Functions host and the Azure SDKs find the identity and the storage account.
var hostSettings = {
  AzureWebJobsStorage__accountName: storageAccountName
  AzureWebJobsStorage__blobServiceUri: storageBlobEndpoint
  AzureWebJobsStorage__queueServiceUri: storageQueueEndpoint
  AzureWebJobsStorage__tableServiceUri: storageTableEndpoint
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AZURE_CLIENT_ID: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  // The Python worker configures azure-monitor-opentelemetry itself and sends the app's log records
  // with their `extra=` fields as custom dimensions, correlated per invocation (functions/telemetry.py;
  // host.json sets telemetryMode OpenTelemetry). "Use OpenTelemetry with Azure Functions", Microsoft Learn.
  PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY: 'true'
}
var allSettings = union(appSettings, hostSettings)

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: zone-redundant Flex Consumption plans exist only in some regions; the app's state lives in storage (zone-redundant where the region has zones), so a zone outage delays a sweep and loses nothing.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: public network access stays on: Event Grid and the action group's webhook reach the app over the internet; the webhook needs the secure-webhook Entra ID token (or, opted out, the function key) and the Event Grid trigger the host's system key.
  // checkov:skip=CKV_AZURE_17: no client certificates: Event Grid and action groups cannot present one; callers are authenticated by function keys and Entra ID tokens instead.
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales per trigger from zero on its own; a fixed minimum instance count (always-ready) would only add cost to a timer and queue workload.
  // checkov:skip=CKV_AZURE_213: no health check path: the app serves no HTTP endpoint besides the alert webhook, so there is nothing for a health probe to route around; failures surface in Application Insights and the automation-silent alert.
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': serviceName
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityResourceId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    // Virtual network integration of Flex Consumption: the app reaches storage through the private endpoints
    // (https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#virtual-network-integration).
    virtualNetworkSubnetId: empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    clientCertEnabled: false
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      remoteDebuggingEnabled: false
      cors: {
        allowedOrigins: []
      }
      appSettings: [for setting in items(allSettings): {
        name: setting.key
        value: setting.value
      }]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityResourceId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: runtimeVersion
      }
    }
  }
}

// Top-level children, not nested in the site: the Bicep parser the checks use keeps one nested child only.
// FTP and the SCM site's basic (user name and password) publishing are off: azd deploys with Entra ID.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

output FUNCTION_APP_NAME string = functionApp.name
output FUNCTION_APP_RESOURCE_ID string = functionApp.id
output FUNCTION_APP_HOSTNAME string = functionApp.properties.defaultHostName
