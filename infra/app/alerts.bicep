// The log search alert rules of backupwarden/domain/alert_rules.py and the action group they notify.
//
// Each rule's KQL is loaded from the same kql/ file the code and the tests run (loadTextContent), so a
// change to a query reaches Azure with the next `azd provision`; tests/test_infra.py holds the name,
// frequency, window, operator, threshold, dimensions and severity below equal to alert_rules.py.
//
// The action group mails the operator (when an address is given) and posts every alert to the app's
// alert_webhook (POST /api/alerts). By default (webhookAuth 'entra') it is a secure webhook: the action
// group sends an Entra ID token for the operator's app registration, the app checks it
// (BACKUPWARDEN_WEBHOOK_AUDIENCE) and the function takes no key, so nothing here waits for the code or
// lists a key. Entra app registrations are not ARM resources, so the template cannot create one: until
// its ids are given, the action group has no webhook. webhookAuth 'functionKey' is the explicit opt-out:
// the URL carries the function's key, which exists only once the code is deployed (`functionsDeployed`).
// Secure webhook properties: https://learn.microsoft.com/azure/azure-monitor/alerts/action-groups#secure-webhook
//
// The rules skip ARM's query validation: they are created seconds after their _CL tables, before the
// workspace's query schema knows them, and validation would then refuse a correct query. The KQL is
// run against the emulator's workspace by tests/test_infra.py instead.
// skipQueryValidation: https://learn.microsoft.com/azure/templates/microsoft.insights/2023-12-01/scheduledqueryrules

@description('Azure region of the alert rules (the workspace\'s).')
param location string

@description('Tags put on every resource.')
param tags object = {}

@description('Resource id of the Log Analytics workspace the rules query.')
param workspaceResourceId string

@description('Name of the action group.')
param actionGroupName string

@description('E-mail address told of every alert; empty: no e-mail.')
param alertEmail string = ''

@description('Name of the function app whose alert_webhook receives the alerts.')
param functionAppName string

@description('How the webhook is authenticated: an Entra ID token (secure webhook) or, as an explicit opt-out, the function key in its URL.')
@allowed([
  'entra'
  'functionKey'
])
param webhookAuth string = 'entra'

@description('Whether the app\'s code is deployed (alert_webhook exists and has a key); used by webhookAuth functionKey only.')
param functionsDeployed bool = false

@description('Whether the Entra application of the secure webhook is given (webhookAuth entra); without it the action group gets no webhook.')
param secureWebhook bool = false

@description('Object id of the Entra application the secure webhook authenticates to.')
param webhookEntraAppObjectId string = ''

@description('Application ID URI of that Entra application (the token audience).')
param webhookEntraAppIdUri string = ''

var webhookFunctionName = 'alert_webhook'
var webhookRoute = 'alerts'
var entraWebhook = webhookAuth == 'entra'

// The rules of backupwarden/domain/alert_rules.py. Durations are ISO 8601; dimensions split alerts per value.
var alertRules = [
  {
    name: 'backupwarden-backup-failed'
    description: 'A VM backup or configure-backup job failed.'
    query: loadTextContent('../../kql/alert_backup_failed.kql')
    severity: 1
    evaluationFrequency: 'PT5M'
    windowSize: 'P2D' // the longest a log search alert looks back: a failure arriving late still fires once
    operator: 'GreaterThan'
    threshold: 0
    dimensions: [
      {
        name: 'VmId'
        operator: 'Include'
        values: [
          '*'
        ]
      }
      {
        name: 'ErrorCode'
        operator: 'Include'
        values: [
          '*'
        ]
      }
      {
        name: 'JobId'
        operator: 'Include'
        values: [
          '*'
        ]
      }
    ]
  }
  {
    name: 'backupwarden-still-unprotected'
    description: 'A VM configured for backup over 24 hours ago still has no recovery point.'
    query: loadTextContent('../../kql/alert_still_unprotected.kql')
    severity: 2
    evaluationFrequency: 'PT1H'
    windowSize: 'P2D'
    operator: 'GreaterThan'
    threshold: 0
    dimensions: [
      {
        name: 'VmId'
        operator: 'Include'
        values: [
          '*'
        ]
      }
    ]
  }
  {
    name: 'backupwarden-automation-silent'
    description: 'The sweep recorded no run for twice its schedule.'
    query: loadTextContent('../../kql/alert_automation_silent.kql')
    severity: 1
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    operator: 'LessThan'
    threshold: 1
    dimensions: []
  }
  {
    name: 'backupwarden-flow-failed'
    description: 'A run of the sweep, outcome shipping or remediation failed as a whole.'
    query: loadTextContent('../../kql/alert_flow_failed.kql')
    severity: 1
    evaluationFrequency: 'PT5M'
    windowSize: 'PT6H'
    operator: 'GreaterThan'
    threshold: 0
    dimensions: [
      {
        name: 'Flow'
        operator: 'Include'
        values: [
          '*'
        ]
      }
      {
        name: 'Cause'
        operator: 'Include'
        values: [
          '*'
        ]
      }
    ]
  }
  {
    name: 'backupwarden-flow-silent'
    description: 'Outcome shipping recorded no run, or enqueued new VMs got no outcome, for 30 minutes.'
    query: loadTextContent('../../kql/alert_flow_silent.kql')
    severity: 1
    evaluationFrequency: 'PT15M'
    windowSize: 'PT6H'
    operator: 'GreaterThan'
    threshold: 0
    dimensions: [
      {
        name: 'Flow'
        operator: 'Include'
        values: [
          '*'
        ]
      }
    ]
  }
  {
    name: 'backupwarden-automation-problems'
    description: 'A flow failed, escalated or found no vault for a VM, or a queue gave up on its work.'
    query: loadTextContent('../../kql/alert_automation_problems.kql')
    severity: 2
    evaluationFrequency: 'PT5M'
    windowSize: 'PT6H'
    operator: 'GreaterThan'
    threshold: 0
    dimensions: [
      {
        name: 'VmId'
        operator: 'Include'
        values: [
          '*'
        ]
      }
      {
        name: 'Result'
        operator: 'Include'
        values: [
          '*'
        ]
      }
      {
        name: 'Reason'
        operator: 'Include'
        values: [
          '*'
        ]
      }
      {
        name: 'Recommendation'
        operator: 'Include'
        values: [
          '*'
        ]
      }
    ]
  }
  {
    name: 'backupwarden-coverage-below-target'
    description: 'Fewer VMs in scope have a recovery point within RPO than BACKUPWARDEN_COVERAGE_TARGET asks.'
    query: loadTextContent('../../kql/alert_coverage_below_target.kql')
    severity: 1
    evaluationFrequency: 'PT1H'
    windowSize: 'P1D' // the latest coverage run of the last day; its rows carry the target
    operator: 'GreaterThan'
    threshold: 0
    dimensions: []
  }
  {
    name: 'backupwarden-vm-past-deadline'
    description: 'A VM in scope has no recovery point within its RPO (new VMs and first backups excepted).'
    query: loadTextContent('../../kql/alert_vm_past_deadline.kql')
    severity: 2
    evaluationFrequency: 'PT1H'
    windowSize: 'P1D'
    operator: 'GreaterThan'
    threshold: 0
    dimensions: [
      {
        name: 'VmId'
        operator: 'Include'
        values: [
          '*'
        ]
      }
    ]
  }
]

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: actionGroupName
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'backupwarden'
    enabled: true
    emailReceivers: empty(alertEmail) ? [] : [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
    // The secure webhook's URL carries no key. listKeys stays inside its condition: ARM evaluates only
    // the branch taken, and before the first deploy the function has no key to list.
    webhookReceivers: entraWebhook ? (secureWebhook ? [
      {
        name: webhookFunctionName
        serviceUri: 'https://${functionApp.properties.defaultHostName}/api/${webhookRoute}'
        useCommonAlertSchema: true
        useAadAuth: true
        objectId: webhookEntraAppObjectId
        identifierUri: webhookEntraAppIdUri
        tenantId: tenant().tenantId
      }
    ] : []) : (functionsDeployed ? [
      {
        name: webhookFunctionName
        serviceUri: 'https://${functionApp.properties.defaultHostName}/api/${webhookRoute}?code=${listKeys('${functionApp.id}/functions/${webhookFunctionName}', '2024-04-01').default}'
        useCommonAlertSchema: true
        useAadAuth: false
      }
    ] : [])
  }
}

resource rules 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [for rule in alertRules: {
  name: rule.name
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: rule.name
    description: rule.description
    severity: rule.severity
    enabled: true
    scopes: [
      workspaceResourceId
    ]
    evaluationFrequency: rule.evaluationFrequency
    windowSize: rule.windowSize
    autoMitigate: true
    skipQueryValidation: true
    criteria: {
      allOf: [
        {
          query: rule.query
          timeAggregation: 'Count'
          operator: rule.operator
          threshold: rule.threshold
          dimensions: rule.dimensions
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}]

output ACTION_GROUP_RESOURCE_ID string = actionGroup.id
output ALERT_RULE_NAMES array = [for rule in alertRules: rule.name]
