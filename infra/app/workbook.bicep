// An Azure Monitor workbook over backupwarden's tables, in two tabs.
// Outcomes: outcomes over time (CompletedWithWarnings a series of its own), failures by error code, VMs
// with jobs completed with warnings, VMs without a recovery point, time to first recovery point. Its
// queries are the texts of kql/ that the `report` command runs (loadTextContent), so the portal and the
// CLI agree; the workbook's time range picker plays the query API's `timespan`.
// Coverage: the coverage trend and the worst offenders of the latest coverage run (BackupCoverage_CL),
// filtered by subscription and vault. These queries take the workbook's parameters ({Subscription},
// {Vault}; `*` for all), so they live here rather than in kql/, whose files are complete queries.

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
    json: '## VM backup outcomes and coverage\nOutcomes: jobs of VMs in scope, as shipped by backupwarden to BackupJobOutcomes_CL. Coverage: each coverage run\'s figures (BackupCoverage_CL). The time range applies to every query.'
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

// The coverage tab's filter: every VM row of the subscription and vault picked ("*": all of them).
var coverageFilter = '| where ("{Subscription}" == "*" or SubscriptionId == "{Subscription}") and ("{Vault}" == "*" or VaultId =~ "{Vault}")'
// The latest coverage run: the one whose total row is newest.
var latestCoverageRun = 'let LatestRun = BackupCoverage_CL | where Kind == "total" | summarize arg_max(TimeGenerated, RunId) by Kind | project RunId;'

var coverageQueries = [
  {
    name: 'coverage-trend'
    title: 'Coverage over time (% of VMs in scope with a recovery point within RPO, and the target)'
    query: join([
      'BackupCoverage_CL'
      '| where Kind == "vm"'
      '| summarize arg_max(TimeGenerated, *) by RecordId'
      coverageFilter
      '| summarize InScope = count(), Covered = countif(WithinRpo), Target = max(Target) by TimeGenerated'
      '| extend CoveragePercent = round(100.0 * Covered / InScope, 2)'
      '| project TimeGenerated, CoveragePercent, Target'
      '| order by TimeGenerated asc'
    ], '\n')
    visualization: 'timechart'
  }
  {
    name: 'coverage-worst-offenders'
    title: 'Worst offenders: VMs of the latest run without a recovery point within RPO, longest first'
    query: join([
      latestCoverageRun
      'BackupCoverage_CL'
      '| where Kind == "vm" and WithinRpo == false'
      '| where RunId in (LatestRun)'
      '| summarize arg_max(TimeGenerated, *) by RecordId'
      coverageFilter
      '| project VmName, SubscriptionId, Region, VaultId, State, Action, HoursWithoutRecoveryPoint, Reason, VmId'
      '| order by HoursWithoutRecoveryPoint desc nulls first, VmName asc'
      '| take 20'
    ], '\n')
    visualization: 'table'
  }
]

// Subscription and vault pickers, their values from the coverage rows of the time range.
var coverageParameters = {
  type: 9
  name: 'coverage-parameters'
  content: {
    version: 'KqlParameterItem/1.0'
    parameters: [
      {
        id: 'coverage-subscription'
        version: 'KqlParameterItem/1.0'
        name: 'Subscription'
        type: 2
        query: 'BackupCoverage_CL | where Kind == "subscription" | distinct SubscriptionId | order by SubscriptionId asc'
        typeSettings: {
          additionalResourceOptions: [
            'value::all'
          ]
          selectAllValue: '*'
          showDefault: false
        }
        defaultValue: 'value::all'
        timeContextFromParameter: 'TimeRange'
        queryType: 0
        resourceType: workspaceResourceType
        crossComponentResources: [
          workspaceResourceId
        ]
      }
      {
        id: 'coverage-vault'
        version: 'KqlParameterItem/1.0'
        name: 'Vault'
        type: 2
        query: 'BackupCoverage_CL | where Kind == "vm" and isnotempty(VaultId) | distinct VaultId | order by VaultId asc'
        typeSettings: {
          additionalResourceOptions: [
            'value::all'
          ]
          selectAllValue: '*'
          showDefault: false
        }
        defaultValue: 'value::all'
        timeContextFromParameter: 'TimeRange'
        queryType: 0
        resourceType: workspaceResourceType
        crossComponentResources: [
          workspaceResourceId
        ]
      }
    ]
  }
}

// The two tabs: each link sets `selectedTab`; a group shows the items of its tab.
var tabs = {
  type: 11
  name: 'tabs'
  content: {
    version: 'LinkItem/1.0'
    style: 'tabs'
    links: [
      {
        id: 'outcomes-tab'
        cellValue: 'selectedTab'
        linkTarget: 'parameter'
        linkLabel: 'Outcomes'
        subTarget: 'outcomes'
        style: 'link'
      }
      {
        id: 'coverage-tab'
        cellValue: 'selectedTab'
        linkTarget: 'parameter'
        linkLabel: 'Coverage'
        subTarget: 'coverage'
        style: 'link'
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

var coverageItems = [for item in coverageQueries: {
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

var outcomesTab = {
  type: 12
  name: 'outcomes-tab'
  content: {
    version: 'NotebookGroup/1.0'
    groupType: 'editable'
    items: queryItems
  }
  // shown until the Coverage tab is picked, so the workbook opens on it
  conditionalVisibility: {
    parameterName: 'selectedTab'
    comparison: 'isNotEqualTo'
    value: 'coverage'
  }
}

var coverageTab = {
  type: 12
  name: 'coverage-tab'
  content: {
    version: 'NotebookGroup/1.0'
    groupType: 'editable'
    items: concat([
      coverageParameters
    ], coverageItems)
  }
  conditionalVisibility: {
    parameterName: 'selectedTab'
    comparison: 'isEqualTo'
    value: 'coverage'
  }
}

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
      items: [
        header
        timeRange
        tabs
        outcomesTab
        coverageTab
      ]
      isLocked: false
      fallbackResourceIds: [
        workspaceResourceId
      ]
    })
  }
}

output WORKBOOK_RESOURCE_ID string = workbook.id
