// An Azure Monitor workbook over the outcome tables: outcomes over time (CompletedWithWarnings a series
// of its own), failures by error code, VMs with jobs completed with warnings, VMs without a recovery point,
// time to first recovery point. Its queries are the texts of kql/ that the
// `report` command runs (loadTextContent), so the portal and the CLI agree; the workbook's time range
// picker plays the query API's `timespan`.

@description('Azure region of the workbook.')
param location string

@description('Tags put on every resource.')
param tags object = {}

@description('Resource id of the Log Analytics workspace the workbook queries.')
param workspaceResourceId string

@description('Display name of the workbook in the portal.')
param displayName string = 'backupwarden: VM backup outcomes'

var workspaceResourceType = 'microsoft.operationalinsights/workspaces'

// Job outcomes (de-duplicated as every report does) counted per status and hour.
var outcomesOverTimeQuery = concat(loadTextContent('../../kql/dedupe_job_outcomes.kql'), '| summarize Jobs = count() by Status, bin(EndTime, 1h)\n| order by EndTime asc\n')

var queries = [
  {
    name: 'outcomes-over-time'
    title: 'Outcomes over time (finished jobs per hour, by status)'
    query: outcomesOverTimeQuery
    visualization: 'timechart'
  }
  {
    name: 'failures-by-error-code'
    title: 'Failures by error code'
    query: loadTextContent('../../kql/report_failures.kql')
    visualization: 'table'
  }
  {
    name: 'vms-with-warnings'
    title: 'VMs with jobs completed with warnings'
    query: loadTextContent('../../kql/report_warnings.kql')
    visualization: 'table'
  }
  {
    name: 'vms-without-recovery-point'
    title: 'VMs without a recovery point'
    query: loadTextContent('../../kql/report_unprotected.kql')
    visualization: 'table'
  }
  {
    name: 'time-to-first-recovery-point'
    title: 'Time to first recovery point'
    query: loadTextContent('../../kql/report_time_to_first_rp.kql')
    visualization: 'table'
  }
]

var header = {
  type: 1
  name: 'header'
  content: {
    json: '## VM backup outcomes\nJobs of VMs in scope, as shipped by backupwarden to BackupJobOutcomes_CL. The time range applies to every query.'
  }
}

var timeRange = {
  type: 9
  name: 'parameters'
  content: {
    version: 'KqlParameterItem/1.0'
    parameters: [
      {
        id: 'time-range'
        version: 'KqlParameterItem/1.0'
        name: 'TimeRange'
        type: 4
        isRequired: true
        value: {
          durationMs: 604800000
        }
        typeSettings: {
          selectableValues: [
            {
              durationMs: 86400000
            }
            {
              durationMs: 604800000
            }
            {
              durationMs: 2592000000
            }
          ]
        }
      }
    ]
  }
}

var queryItems = [for item in queries: {
  type: 3
  name: item.name
  content: {
    version: 'KqlItem/1.0'
    title: item.title
    query: item.query
    size: 0
    queryType: 0
    resourceType: workspaceResourceType
    crossComponentResources: [
      workspaceResourceId
    ]
    timeContextFromParameter: 'TimeRange'
    visualization: item.visualization
  }
}]

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, 'backupwarden-outcomes-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: workspaceResourceId
    version: 'Notebook/1.0'
    serializedData: string({
      version: 'Notebook/1.0'
      items: concat([
        header
        timeRange
      ], queryItems)
      isLocked: false
      fallbackResourceIds: [
        workspaceResourceId
      ]
    })
  }
}

output WORKBOOK_RESOURCE_ID string = workbook.id
