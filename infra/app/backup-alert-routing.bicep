// Azure Backup's built-in alerts (Azure Monitor based alerts of the Recovery Services vaults) routed to
// backupwarden's action group, so the alert_webhook receives them and remediation retries or escalates a
// failed scheduled backup as it does one of the automation's own.
//
// Built-in alerts notify nobody by themselves: an alert processing rule adds an action group to them
// ("Azure Monitor alerts for Azure Backup", Microsoft Learn: configure notifications through an alert
// processing rule). This one matches every alert of the "Azure Backup" monitor service on a Recovery
// Services vault of the subscriptions in scope. Remediation acts only on job failures: for any other
// Azure Backup alert it finds no failed job of the vault and records a skip.
//
// Vaults raise job-failure alerts only with monitoringSettings.azureMonitorAlertSettings
// .alertsForAllJobFailures Enabled; backupwarden does not own the vaults (docs/deploy.md, "Built-in
// Azure Backup alerts").
//
// Resource: Microsoft.AlertsManagement/actionRules@2021-08-08 (alert processing rules; location
// 'Global'; conditions of field/operator/values; action AddActionGroups with actionGroupIds).

@description('Tags put on every resource.')
param tags object = {}

@description('Name of the alert processing rule.')
param name string

@description('Ids of the subscriptions in scope (GUIDs); the rule applies to alerts on their vaults.')
param subscriptionIds array

@description('Resource id of the action group that posts to alert_webhook.')
param actionGroupId string

resource backupAlertRouting 'Microsoft.AlertsManagement/actionRules@2021-08-08' = {
  name: name
  location: 'Global'
  tags: tags
  properties: {
    description: 'Azure Backup built-in alerts (job failures) of the vaults in scope to backupwarden\'s webhook.'
    enabled: true
    scopes: [for subscriptionId in subscriptionIds: '/subscriptions/${subscriptionId}']
    conditions: [
      {
        field: 'MonitorService'
        operator: 'Equals'
        values: [
          'Azure Backup'
        ]
      }
      {
        field: 'TargetResourceType'
        operator: 'Equals'
        values: [
          'microsoft.recoveryservices/vaults'
        ]
      }
    ]
    actions: [
      {
        actionType: 'AddActionGroups'
        actionGroupIds: [
          actionGroupId
        ]
      }
    ]
  }
}

output BACKUP_ALERT_ROUTING_RULE_ID string = backupAlertRouting.id
