// What the app's managed identity may do inside its own resource group, and no more:
//   - Storage Blob Data Owner on the account: the Functions host's leases (timer singletons), its keys and
//     the deployment package (the host storage docs ask for Owner, not Contributor, for identity-based
//     AzureWebJobsStorage);
//   - Storage Queue Data Contributor: the protect, remediation and sweep queues (and their -poison queues);
//   - Storage Table Data Contributor: the ledger, outbox and alert de-duplication tables;
//   - Monitoring Metrics Publisher on the data collection rule: Logs Ingestion uploads (azure-facts §4);
//   - Log Analytics Reader on the workspace: the report command and remediation's queries;
//   - Monitoring Metrics Publisher on Application Insights: the host's identity-based telemetry.
// Roles outside this group (Reader, Backup Operator, VM write) come from infra/subscription/scope.bicep.
//
// The deploying user (deployerPrincipalId, filled in by azd) gets what the backupwarden CLI does against
// this deployment, and no more: the tables and queues (Storage Table and Queue Data Contributor on the
// account; no blob role, the CLI reads no blob), the workspace's queries (Log Analytics Reader) and
// ship-outcomes' uploads (Monitoring Metrics Publisher on the rule). Data roles are not implied by Owner.
//
// Every assignment is named guid(scope, principal, role), so a redeploy finds the same one, and names its
// principalType, so ARM does not look up a principal created moments ago before it has replicated
// (https://learn.microsoft.com/azure/role-based-access-control/role-assignments-template#new-service-principal).

@description('Principal (object) id of the app\'s managed identity.')
param principalId string

@description('Name of the app\'s storage account.')
param storageAccountName string

@description('Name of the data collection rule the app uploads through.')
param dataCollectionRuleName string

@description('Name of the Log Analytics workspace.')
param workspaceName string

@description('Name of the Application Insights component.')
param applicationInsightsName string

@description('Object id of the deploying user or principal, given the CLI\'s data roles; empty: none.')
param deployerPrincipalId string = ''

@description('Principal type of deployerPrincipalId.')
@allowed([
  'User'
  'ServicePrincipal'
])
param deployerPrincipalType string = 'User'

var grantDeployer = !empty(deployerPrincipalId)

var storageBlobDataOwnerRoleId = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageQueueDataContributorRoleId = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var storageTableDataContributorRoleId = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb'
var logAnalyticsReaderRoleId = '73c42c96-874c-492b-b04d-ab87d138a893'

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource dataCollectionRule 'Microsoft.Insights/dataCollectionRules@2024-03-11' existing = {
  name: dataCollectionRuleName
}

resource workspace 'Microsoft.OperationalInsights/workspaces@2025-07-01' existing = {
  name: workspaceName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource blobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storageAccount.id, principalId, storageBlobDataOwnerRoleId)
  scope: storageAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwnerRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource queueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storageAccount.id, principalId, storageQueueDataContributorRoleId)
  scope: storageAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributorRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource tableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storageAccount.id, principalId, storageTableDataContributorRoleId)
  scope: storageAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource ruleMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(dataCollectionRule.id, principalId, monitoringMetricsPublisherRoleId)
  scope: dataCollectionRule
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource workspaceReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, principalId, logAnalyticsReaderRoleId)
  scope: workspace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', logAnalyticsReaderRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource telemetryPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, principalId, monitoringMetricsPublisherRoleId)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource deployerTableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantDeployer) {
  name: guid(storageAccount.id, deployerPrincipalId, storageTableDataContributorRoleId)
  scope: storageAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRoleId)
    principalId: deployerPrincipalId
    principalType: deployerPrincipalType
    description: 'backupwarden CLI: the ledger, outbox and alert tables.'
  }
}

resource deployerQueueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantDeployer) {
  name: guid(storageAccount.id, deployerPrincipalId, storageQueueDataContributorRoleId)
  scope: storageAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributorRoleId)
    principalId: deployerPrincipalId
    principalType: deployerPrincipalType
    description: 'backupwarden CLI: the protect, remediation and sweep queues.'
  }
}

resource deployerWorkspaceReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantDeployer) {
  name: guid(workspace.id, deployerPrincipalId, logAnalyticsReaderRoleId)
  scope: workspace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', logAnalyticsReaderRoleId)
    principalId: deployerPrincipalId
    principalType: deployerPrincipalType
    description: 'backupwarden CLI: report queries.'
  }
}

resource deployerRuleMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantDeployer) {
  name: guid(dataCollectionRule.id, deployerPrincipalId, monitoringMetricsPublisherRoleId)
  scope: dataCollectionRule
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRoleId)
    principalId: deployerPrincipalId
    principalType: deployerPrincipalType
    description: 'backupwarden CLI: ship-outcomes uploads through the Logs Ingestion API.'
  }
}

output ROLE_ASSIGNMENT_IDS array = [
  blobDataOwner.id
  queueDataContributor.id
  tableDataContributor.id
  ruleMetricsPublisher.id
  workspaceReader.id
  telemetryPublisher.id
]
