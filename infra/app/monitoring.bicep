// Where backupwarden's outcomes, decisions and coverage land: a Log Analytics workspace, the three custom tables,
// and the data collection endpoint + rule the Logs Ingestion API writes through.
//
// The workspace is declared here, not taken as an existing one: the tables, the DCR destination and
// (in main.bicep) Application Insights all hang off it, and a deployment that owns it can be torn down
// with `azd down`. To write into a workspace you already run, replace the `workspace` resource below by
// `resource workspace '…' existing = { name: workspaceName }` and drop its properties; nothing else changes.
//
// The columns are the ones of backupwarden/domain/log_schema.py, the single source of truth;
// tests/test_infra_schema.py parses this file and fails when the two disagree.

@description('Azure region of the workspace, the data collection endpoint and the rule (they must share it).')
param location string

@description('Tags put on every resource.')
param tags object = {}

@description('Name of the Log Analytics workspace.')
param workspaceName string

@description('Name of the data collection endpoint the app sends to (its logs ingestion URL).')
param dataCollectionEndpointName string

@description('Name of the data collection rule holding the three Custom- streams.')
param dataCollectionRuleName string

@description('Days the workspace keeps its other tables (App Insights, diagnostics).')
@minValue(30)
@maxValue(730)
param workspaceRetentionInDays int = 30

@description('Days BackupJobOutcomes_CL, BackupAutomationActions_CL and BackupCoverage_CL stay queryable (Analytics plan).')
@minValue(4)
@maxValue(730)
param outcomeRetentionInDays int = 90

@description('Whether the data collection endpoint accepts uploads from public networks; the Flex Consumption app sends without a private endpoint.')
@allowed([
  'Enabled'
  'Disabled'
])
param ingestionPublicNetworkAccess string = 'Enabled'

var jobOutcomesTableName = 'BackupJobOutcomes_CL'
var automationActionsTableName = 'BackupAutomationActions_CL'
var coverageTableName = 'BackupCoverage_CL'
var workspaceDestinationName = 'backupwardenWorkspace'

// One list per table, used by both the table schema and the DCR stream declaration.
var jobOutcomesColumns = [
  {
    name: 'TimeGenerated'
    type: 'datetime'
  }
  {
    name: 'RecordId'
    type: 'string'
  }
  {
    name: 'JobId'
    type: 'string'
  }
  {
    name: 'Operation'
    type: 'string'
  }
  {
    name: 'Status'
    type: 'string'
  }
  {
    name: 'ErrorCode'
    type: 'string'
  }
  {
    name: 'ErrorMessage'
    type: 'string'
  }
  {
    name: 'Recommendation'
    type: 'string'
  }
  {
    name: 'VmId'
    type: 'string'
  }
  {
    name: 'VmName'
    type: 'string'
  }
  {
    name: 'VaultId'
    type: 'string'
  }
  {
    name: 'SubscriptionId'
    type: 'string'
  }
  {
    name: 'Region'
    type: 'string'
  }
  {
    name: 'StartTime'
    type: 'datetime'
  }
  {
    name: 'EndTime'
    type: 'datetime'
  }
  {
    name: 'DurationSeconds'
    type: 'real'
  }
  {
    name: 'TriggeredBy'
    type: 'string'
  }
  {
    name: 'AutomationRunId'
    type: 'string'
  }
  {
    name: 'Attempt'
    type: 'int'
  }
]

var automationActionsColumns = [
  {
    name: 'TimeGenerated'
    type: 'datetime'
  }
  {
    name: 'RecordId'
    type: 'string'
  }
  {
    name: 'RunId'
    type: 'string'
  }
  {
    name: 'Source'
    type: 'string'
  }
  {
    name: 'Action'
    type: 'string'
  }
  {
    name: 'Result'
    type: 'string'
  }
  {
    name: 'Reason'
    type: 'string'
  }
  {
    name: 'VmId'
    type: 'string'
  }
  {
    name: 'VaultId'
    type: 'string'
  }
  {
    name: 'JobId'
    type: 'string'
  }
  {
    name: 'ErrorCode'
    type: 'string'
  }
  {
    name: 'DryRun'
    type: 'boolean'
  }
]

var coverageColumns = [
  {
    name: 'TimeGenerated'
    type: 'datetime'
  }
  {
    name: 'RecordId'
    type: 'string'
  }
  {
    name: 'RunId'
    type: 'string'
  }
  {
    name: 'Kind'
    type: 'string'
  }
  {
    name: 'SubscriptionId'
    type: 'string'
  }
  {
    name: 'Region'
    type: 'string'
  }
  {
    name: 'VmId'
    type: 'string'
  }
  {
    name: 'VmName'
    type: 'string'
  }
  {
    name: 'VaultId'
    type: 'string'
  }
  {
    name: 'State'
    type: 'string'
  }
  {
    name: 'Action'
    type: 'string'
  }
  {
    name: 'Reason'
    type: 'string'
  }
  {
    name: 'WithinRpo'
    type: 'boolean'
  }
  {
    name: 'HoursWithoutRecoveryPoint'
    type: 'real'
  }
  {
    name: 'InScope'
    type: 'int'
  }
  {
    name: 'Covered'
    type: 'int'
  }
  {
    name: 'CoveragePercent'
    type: 'real'
  }
  {
    name: 'Target'
    type: 'real'
  }
  {
    name: 'DryRun'
    type: 'boolean'
  }
]

resource workspace 'Microsoft.OperationalInsights/workspaces@2025-07-01' = {
  name: workspaceName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: workspaceRetentionInDays
    features: {
      // Identity only: no shared-key ingestion or queries; the app uses its managed identity.
      disableLocalAuth: true
      enableLogAccessUsingOnlyResourcePermissions: true
    }
    publicNetworkAccessForIngestion: 'Enabled'
    publicNetworkAccessForQuery: 'Enabled'
  }
}

resource jobOutcomesTable 'Microsoft.OperationalInsights/workspaces/tables@2025-07-01' = {
  parent: workspace
  name: jobOutcomesTableName
  properties: {
    plan: 'Analytics'
    retentionInDays: outcomeRetentionInDays
    totalRetentionInDays: outcomeRetentionInDays
    schema: {
      name: jobOutcomesTableName
      description: 'One row per finished backup or configure-backup job of an Azure VM in scope (backupwarden).'
      columns: jobOutcomesColumns
    }
  }
}

resource automationActionsTable 'Microsoft.OperationalInsights/workspaces/tables@2025-07-01' = {
  parent: workspace
  name: automationActionsTableName
  properties: {
    plan: 'Analytics'
    retentionInDays: outcomeRetentionInDays
    totalRetentionInDays: outcomeRetentionInDays
    schema: {
      name: automationActionsTableName
      description: 'One row per decision of the backupwarden sweep, new-VM flow and remediation.'
      columns: automationActionsColumns
    }
  }
}

resource coverageTable 'Microsoft.OperationalInsights/workspaces/tables@2025-07-01' = {
  parent: workspace
  name: coverageTableName
  properties: {
    plan: 'Analytics'
    retentionInDays: outcomeRetentionInDays
    totalRetentionInDays: outcomeRetentionInDays
    schema: {
      name: coverageTableName
      description: 'Per coverage run of backupwarden: the total, each subscription and region, and each VM in scope.'
      columns: coverageColumns
    }
  }
}

resource dataCollectionEndpoint 'Microsoft.Insights/dataCollectionEndpoints@2024-03-11' = {
  name: dataCollectionEndpointName
  location: location
  tags: tags
  properties: {
    description: 'Logs Ingestion endpoint of backupwarden.'
    networkAcls: {
      publicNetworkAccess: ingestionPublicNetworkAccess
    }
  }
}

resource dataCollectionRule 'Microsoft.Insights/dataCollectionRules@2024-03-11' = {
  name: dataCollectionRuleName
  location: location
  tags: tags
  properties: {
    description: 'backupwarden job outcomes, automation decisions and coverage, sent through the Logs Ingestion API.'
    dataCollectionEndpointId: dataCollectionEndpoint.id
    streamDeclarations: {
      'Custom-BackupJobOutcomes': {
        columns: jobOutcomesColumns
      }
      'Custom-BackupAutomationActions': {
        columns: automationActionsColumns
      }
      'Custom-BackupCoverage': {
        columns: coverageColumns
      }
    }
    destinations: {
      logAnalytics: [
        {
          name: workspaceDestinationName
          workspaceResourceId: workspace.id
        }
      ]
    }
    dataFlows: [
      {
        streams: [
          'Custom-BackupJobOutcomes'
        ]
        destinations: [
          workspaceDestinationName
        ]
        transformKql: 'source'
        outputStream: 'Custom-BackupJobOutcomes_CL'
      }
      {
        streams: [
          'Custom-BackupAutomationActions'
        ]
        destinations: [
          workspaceDestinationName
        ]
        transformKql: 'source'
        outputStream: 'Custom-BackupAutomationActions_CL'
      }
      {
        streams: [
          'Custom-BackupCoverage'
        ]
        destinations: [
          workspaceDestinationName
        ]
        transformKql: 'source'
        outputStream: 'Custom-BackupCoverage_CL'
      }
    ]
  }
  // A data flow's output table must exist when the rule is validated.
  dependsOn: [
    jobOutcomesTable
    automationActionsTable
    coverageTable
  ]
}

@description('Immutable id of the data collection rule (dcr-…): the rule id in each Logs Ingestion upload.')
output BACKUPWARDEN_DCR_IMMUTABLE_ID string = dataCollectionRule.properties.immutableId

@description('Logs ingestion URL of the data collection endpoint: the LogsIngestionClient endpoint.')
output BACKUPWARDEN_LOGS_INGESTION_ENDPOINT string = dataCollectionEndpoint.properties.logsIngestion.endpoint

@description('Workspace (customer) id the Log Analytics query API takes.')
output BACKUPWARDEN_LOG_ANALYTICS_WORKSPACE_ID string = workspace.properties.customerId

// For main.bicep: Application Insights, and the role assignments on the workspace and on the rule.
output LOG_ANALYTICS_WORKSPACE_RESOURCE_ID string = workspace.id
output LOG_ANALYTICS_WORKSPACE_NAME string = workspace.name
output DATA_COLLECTION_RULE_RESOURCE_ID string = dataCollectionRule.id
output DATA_COLLECTION_RULE_NAME string = dataCollectionRule.name
