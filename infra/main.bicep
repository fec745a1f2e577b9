// backupwarden on Azure: `azd up` deploys this file (subscription scope) and the code.
//
// One resource group holds the app: its managed identity, storage, Log Analytics (outcome tables, data
// collection endpoint and rule), Application Insights, the Flex Consumption function app, the alert
// rules and action group, and the workbook. Each subscription in scope (this one and those in
// additionalSubscriptionIds) gets the identity's roles there and an Event Grid system topic (new, or
// its existing one) delivering VM writes to the app's vm-events queue (subscription/scope.bicep). The
// queue exists before the code, so one provision wires the events. See docs/deploy.md.

targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; names and tags every resource.')
param environmentName string

// Regions that offer Flex Consumption, as Azure-Samples/functions-quickstart-python-http-azd lists them
// (infra/main.bicep). Microsoft publishes no fixed list: `az functionapp list-flexconsumption-locations`
// gives today's (https://learn.microsoft.com/azure/azure-functions/flex-consumption-how-to#view-currently-supported-regions).
// The list grows: add a region the command shows (docs/deploy.md, "Regions").
@minLength(1)
@description('Azure region of the app: one where Flex Consumption is offered.')
@allowed([
  'australiaeast'
  'australiasoutheast'
  'brazilsouth'
  'canadacentral'
  'centralindia'
  'centralus'
  'eastasia'
  'eastus'
  'eastus2'
  'eastus2euap'
  'francecentral'
  'germanywestcentral'
  'italynorth'
  'japaneast'
  'koreacentral'
  'northcentralus'
  'northeurope'
  'norwayeast'
  'southafricanorth'
  'southcentralus'
  'southeastasia'
  'southindia'
  'spaincentral'
  'swedencentral'
  'uaenorth'
  'uksouth'
  'ukwest'
  'westcentralus'
  'westeurope'
  'westus'
  'westus2'
  'westus3'
])
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Name of the app\'s resource group; empty: rg-<environmentName>.')
param resourceGroupName string = ''

@description('Storage redundancy: Standard_LRS or Standard_ZRS; empty: ZRS where the region has availability zones, else LRS (app/storage.bicep).')
@allowed([
  ''
  'Standard_LRS'
  'Standard_ZRS'
])
param storageSkuName string = ''

@description('Private-network mode: a virtual network the app integrates with, private endpoints for its storage, storage closed to public networks (app/network.bicep).')
param vnetEnabled bool = false

@description('Python version of the function app (what Flex Consumption runs and the code is tested on).')
@allowed([
  '3.11'
  '3.12'
])
param runtimeVersion string = '3.11'

@description('Whether the code is deployed (alert_webhook exists, for the plain webhook\'s function key).')
param functionsDeployed bool = false

// --- scope and rights ------------------------------------------------------------------------------
@description('Resource id of this subscription\'s existing Event Grid system topic (type Microsoft.Resources.Subscriptions, with a system-assigned identity); empty: create backupwarden-subscription-events. A subscription holds only one such topic.')
param existingSystemTopicId string = ''

@description('More subscriptions in scope besides this one, comma-separated ids. The deployer needs Owner (or User Access Administrator and Contributor) there; otherwise deploy subscription/scope.bicep per subscription (docs/deploy.md).')
param additionalSubscriptionIds string = ''

@description('Subscriptions in scope whose owners deploy subscription/scope.bicep themselves, comma-separated ids: in BACKUPWARDEN_SUBSCRIPTIONS, but nothing is deployed there from here.')
param separatelyGrantedSubscriptionIds string = ''

@description('Where Backup Operator is assigned: the vaults\' resource groups (vaultResourceGroupIds) or each whole subscription in scope.')
@allowed([
  'resourceGroups'
  'subscription'
])
param backupOperatorScope string = 'resourceGroups'

@description('Comma-separated resource ids (/subscriptions/…/resourceGroups/…) of the resource groups holding the Recovery Services vaults.')
param vaultResourceGroupIds string = ''

@description('Where new VMs may get protection enabled: the groups in vmResourceGroupIds (default; at least one required), each whole subscription (an explicit choice), or nowhere.')
@allowed([
  'subscription'
  'resourceGroups'
  'none'
])
param vmWriteScope string = 'resourceGroups'

@description('Comma-separated resource ids of the resource groups whose new VMs may be protected (vmWriteScope resourceGroups).')
param vmResourceGroupIds string = ''

// Virtual Machine Contributor by default: the least built-in role holding virtualMachines/write, which
// Azure Backup checks when protection is enabled. The custom role (only VM read and write) is created
// in the same deployment as its assignments, which can fail until the new definition has replicated.
@description('Role carrying the VM write permission: VirtualMachineContributor (built-in) or custom (only virtualMachines/read and /write; its first assignment may race its creation).')
@allowed([
  'custom'
  'VirtualMachineContributor'
])
param vmWriteRole string = 'VirtualMachineContributor'

@description('Object id of the deploying user or principal (azd fills it in: AZURE_PRINCIPAL_ID); it gets the data roles the backupwarden CLI needs on the storage account, the workspace and the data collection rule. Empty: none.')
param deployerPrincipalId string = ''

@description('Principal type of deployerPrincipalId: User, or ServicePrincipal when a pipeline deploys.')
@allowed([
  'User'
  'ServicePrincipal'
])
param deployerPrincipalType string = 'User'

// --- alerting --------------------------------------------------------------------------------------
@description('E-mail address told of every alert; empty: no e-mail.')
param alertEmail string = ''

@description('How the action group authenticates to alert_webhook: entra (secure webhook, an Entra ID token the app checks; needs webhookEntraAppId and webhookEntraAppObjectId, else no webhook) or functionKey (opt-out: the function key in the URL, once functionsDeployed).')
@allowed([
  'entra'
  'functionKey'
])
param webhookAuth string = 'entra'

@description('Client (application) id of the Entra app registration of the secure webhook (docs/deploy.md); empty: the action group has no webhook until it is given.')
param webhookEntraAppId string = ''

@description('Object id of that Entra application (the action group names it); required with webhookEntraAppId.')
param webhookEntraAppObjectId string = ''

@description('Application ID URI of that application, the audience of the action group\'s tokens; empty: api://<webhookEntraAppId>.')
param webhookEntraAppIdUri string = ''

// --- backupwarden's settings (backupwarden/settings.py; defaults as there) ---------------------------
@description('SWEEP_SCHEDULE: NCRONTAB (six fields, UTC) of the sweep.')
param sweepSchedule string = '0 */30 * * * *'

@description('OUTCOMES_SCHEDULE: NCRONTAB of ship_outcomes.')
param outcomesSchedule string = '0 */5 * * * *'

@description('RECONCILE_SCHEDULE: NCRONTAB of the reconciler (every VM in scope, every protection state).')
param reconcileSchedule string = '0 15 * * * *'

@description('BACKUPWARDEN_DISCOVERY: resource-graph, or vaults where Resource Graph is not permitted.')
@allowed([
  'resource-graph'
  'vaults'
])
param discovery string = 'resource-graph'

@description('BACKUPWARDEN_GRACE_PERIOD: how long an item waits for its first backup before the sweep acts.')
param gracePeriod string = '1h'

@description('BACKUPWARDEN_DRY_RUN: decide and report, but send no write to Azure.')
param dryRun bool = false

@description('BACKUPWARDEN_DAILY_BUDGET: on-demand backups per VM per UTC day.')
@minValue(1)
@maxValue(9)
param dailyBudget int = 3

@description('BACKUPWARDEN_MAX_TRIGGERS_PER_RUN: most backups one run triggers.')
@minValue(1)
@maxValue(100000)
param maxTriggersPerRun int = 500

@description('BACKUPWARDEN_RECOVERY_POINT_EXPIRY_DAYS: retention of an on-demand recovery point.')
@minValue(1)
@maxValue(9999)
param recoveryPointExpiryDays int = 30

@description('BACKUPWARDEN_VAULT_RULES: JSON array of vault mapping rules for new VMs.')
param vaultRules string = '[]'

@description('BACKUPWARDEN_PROVISIONING_RECHECK_S: seconds before a provisioning VM is checked again.')
@minValue(1)
@maxValue(3600)
param provisioningRecheckSeconds int = 60

@description('BACKUPWARDEN_MAX_PROVISIONING_WAITS: rechecks of a provisioning VM before giving up.')
@minValue(0)
@maxValue(1000)
param maxProvisioningWaits int = 20

@description('BACKUPWARDEN_JOBS_OVERLAP: how far before the watermark each outcomes run re-reads jobs.')
param jobsOverlap string = '1h'

@description('BACKUPWARDEN_RETRY_CAP: remediation retries of a VM-side failure before it escalates.')
@minValue(0)
@maxValue(9)
param retryCap int = 2

@description('BACKUPWARDEN_RETRY_BACKOFF: least time between two remediation retries of a VM.')
param retryBackoff string = '30m'

@description('BACKUPWARDEN_FAILURE_CLASSES: JSON object of error code to failure class, over the built-in ones.')
param failureClasses string = '{}'

@description('BACKUPWARDEN_HTTP_RETRY_TOTAL: retries per Azure request.')
@minValue(0)
@maxValue(20)
param httpRetryTotal int = 5

@description('BACKUPWARDEN_OPERATION_POLL_TIMEOUT_S: how long an accepted operation is followed.')
@minValue(1)
@maxValue(3600)
param operationPollTimeoutSeconds int = 300

@description('BACKUPWARDEN_OPERATION_POLL_INTERVAL_S: longest wait between reads of a running operation (0.01 to 60).')
param operationPollIntervalSeconds string = '1'

@description('BACKUPWARDEN_LOG_ANALYTICS_ENDPOINT: the Log Analytics query API of the cloud.')
param logAnalyticsQueryEndpoint string = 'https://api.loganalytics.io'

@description('BACKUPWARDEN_OPENID_CONFIGURATION_URL: only for a sovereign cloud; empty: the public cloud\'s.')
param openIdConfigurationUrl string = ''

@description('BACKUPWARDEN_PROTECT_QUEUE: queue between vm_written and protect_vm.')
param protectQueueName string = 'backupwarden-protect'

@description('BACKUPWARDEN_REMEDIATION_QUEUE: queue between alert_webhook and the remediation worker.')
param remediationQueueName string = 'backupwarden-remediate'

@description('BACKUPWARDEN_SWEEP_QUEUE: queue between the sweep timer and sweep_worker.')
param sweepQueueName string = 'backupwarden-sweep'

@description('BACKUPWARDEN_SWEEP_INLINE_MAX: largest sweep plan handled within the timer run (0: always fan out).')
@minValue(0)
@maxValue(100000)
param sweepInlineMax int = 100

@description('BACKUPWARDEN_ARM_READ_BUCKET: client-side pacing of ARM reads per subscription (capacity/refill per second).')
param armReadBucket string = '250/25'

@description('BACKUPWARDEN_ARM_WRITE_BUCKET: the same for ARM writes.')
param armWriteBucket string = '200/10'

@description('BACKUPWARDEN_RETRY_AFTER_MAX: the longest Retry-After wait of an Azure call or the ARM pacer (1s to 5m).')
param retryAfterMax string = '1m'

@description('BACKUPWARDEN_TIME_BUDGET: what one run may spend before it hands the rest on (1m to 1h, below functionTimeout).')
param timeBudget string = '7m'

@description('BACKUPWARDEN_ENROLL_EXISTING: what an existing VM no vault protects gets: off (report only), tagged (backupwarden:enroll=true) or all.')
@allowed([
  'off'
  'tagged'
  'all'
])
param enrollExisting string = 'off'

@description('BACKUPWARDEN_COVERAGE_TARGET: the percentage of VMs in scope with a recovery point within RPO below which the coverage alert fires (0 to 100).')
@minValue(0)
@maxValue(100)
param coverageTarget int = 95

@description('BACKUPWARDEN_LEDGER_TABLE: table of the idempotency ledger.')
param ledgerTableName string = 'backupwardenledger'

@description('BACKUPWARDEN_OUTBOX_TABLE: table of records waiting for upload.')
param outboxTableName string = 'backupwardenoutbox'

@description('BACKUPWARDEN_ALERT_DEDUP_TABLE: table of the alert notifications taken in.')
param alertDedupTableName string = 'backupwardenalerts'

var serviceName = 'backupwarden'
var tags = {
  'azd-env-name': environmentName
  application: 'backupwarden'
}
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var functionAppName = 'func-backupwarden-${resourceToken}'
var deadLetterContainerName = 'vm-events-deadletter'
// Event Grid's queue; functions/new_vms.py's VM_EVENT_QUEUE names it too (tests hold them equal)
var vmEventQueueName = 'backupwarden-vm-events'
// Subscription-scope deployment names are global to the subscription and tied to a region: one per
// environment (resourceToken), within the 64 characters a deployment name may have
// (https://learn.microsoft.com/azure/azure-resource-manager/management/resource-name-rules#microsoftresources).
var scopeDeploymentPrefix = 'backupwarden-${resourceToken}'
var entraWebhook = webhookAuth == 'entra'
var secureWebhook = entraWebhook && !empty(webhookEntraAppId)
var webhookAudience = empty(webhookEntraAppIdUri) ? 'api://${webhookEntraAppId}' : webhookEntraAppIdUri
var additionalSubscriptionList = empty(additionalSubscriptionIds) ? [] : split(additionalSubscriptionIds, ',')
var separatelyGrantedSubscriptionList = empty(separatelyGrantedSubscriptionIds) ? [] : split(separatelyGrantedSubscriptionIds, ',')
var subscriptionsInScope = join(concat([subscription().subscriptionId], additionalSubscriptionList, separatelyGrantedSubscriptionList), ',')
var vaultResourceGroupIdList = empty(vaultResourceGroupIds) ? [] : split(vaultResourceGroupIds, ',')
var vmResourceGroupIdList = empty(vmResourceGroupIds) ? [] : split(vmResourceGroupIds, ',')

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'id-backupwarden-${resourceToken}'
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'stbw${resourceToken}'
    deploymentContainerName: 'app-package-${resourceToken}'
    deadLetterContainerName: deadLetterContainerName
    workQueueNames: [
      protectQueueName
      remediationQueueName
      sweepQueueName
      vmEventQueueName
    ]
    ledgerTableName: ledgerTableName
    outboxTableName: outboxTableName
    alertDedupTableName: alertDedupTableName
    skuName: storageSkuName
    privateNetwork: vnetEnabled
  }
}

module network 'app/network.bicep' = if (vnetEnabled) {
  name: 'network'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'vnet-backupwarden-${resourceToken}'
    storageAccountResourceId: storage.outputs.STORAGE_ACCOUNT_RESOURCE_ID
    storageAccountName: storage.outputs.STORAGE_ACCOUNT_NAME
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    location: location
    tags: tags
    workspaceName: 'log-backupwarden-${resourceToken}'
    dataCollectionEndpointName: 'dce-backupwarden-${resourceToken}'
    dataCollectionRuleName: 'dcr-backupwarden-${resourceToken}'
  }
}

module appInsights 'app/app-insights.bicep' = {
  name: 'app-insights'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'appi-backupwarden-${resourceToken}'
    workspaceResourceId: monitoring.outputs.LOG_ANALYTICS_WORKSPACE_RESOURCE_ID
  }
}

module functionApp 'app/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    location: location
    tags: tags
    name: functionAppName
    planName: 'plan-backupwarden-${resourceToken}'
    serviceName: serviceName
    identityResourceId: identity.outputs.IDENTITY_RESOURCE_ID
    identityClientId: identity.outputs.IDENTITY_CLIENT_ID
    storageAccountName: storage.outputs.STORAGE_ACCOUNT_NAME
    storageBlobEndpoint: storage.outputs.STORAGE_BLOB_ENDPOINT
    storageQueueEndpoint: storage.outputs.STORAGE_QUEUE_ENDPOINT
    storageTableEndpoint: storage.outputs.STORAGE_TABLE_ENDPOINT
    deploymentContainerUrl: storage.outputs.DEPLOYMENT_CONTAINER_URL
    applicationInsightsConnectionString: appInsights.outputs.APPLICATIONINSIGHTS_CONNECTION_STRING
    runtimeVersion: runtimeVersion
    virtualNetworkSubnetId: vnetEnabled ? network.outputs.APP_SUBNET_ID : ''
    // Every setting backupwarden/settings.py reads, except the emulator-only ones and the storage
    // connection, which function-app.bicep sets by identity (tests/test_infra.py holds the two equal).
    appSettings: {
      SWEEP_SCHEDULE: sweepSchedule
      OUTCOMES_SCHEDULE: outcomesSchedule
      RECONCILE_SCHEDULE: reconcileSchedule
      BACKUPWARDEN_SUBSCRIPTIONS: subscriptionsInScope
      BACKUPWARDEN_DISCOVERY: discovery
      BACKUPWARDEN_ARM_ENDPOINT: environment().resourceManager
      BACKUPWARDEN_RESOURCE_GRAPH_ENDPOINT: environment().resourceManager
      BACKUPWARDEN_LOG_ANALYTICS_ENDPOINT: logAnalyticsQueryEndpoint
      BACKUPWARDEN_LOGS_INGESTION_ENDPOINT: monitoring.outputs.BACKUPWARDEN_LOGS_INGESTION_ENDPOINT
      BACKUPWARDEN_DCR_IMMUTABLE_ID: monitoring.outputs.BACKUPWARDEN_DCR_IMMUTABLE_ID
      BACKUPWARDEN_LOG_ANALYTICS_WORKSPACE_ID: monitoring.outputs.BACKUPWARDEN_LOG_ANALYTICS_WORKSPACE_ID
      BACKUPWARDEN_CREDENTIAL: 'default'
      BACKUPWARDEN_GRACE_PERIOD: gracePeriod
      BACKUPWARDEN_DRY_RUN: string(dryRun)
      BACKUPWARDEN_DAILY_BUDGET: string(dailyBudget)
      BACKUPWARDEN_MAX_TRIGGERS_PER_RUN: string(maxTriggersPerRun)
      BACKUPWARDEN_RECOVERY_POINT_EXPIRY_DAYS: string(recoveryPointExpiryDays)
      BACKUPWARDEN_LEDGER_TABLE: ledgerTableName
      BACKUPWARDEN_OUTBOX_TABLE: outboxTableName
      BACKUPWARDEN_ALERT_DEDUP_TABLE: alertDedupTableName
      BACKUPWARDEN_PROTECT_QUEUE: protectQueueName
      BACKUPWARDEN_REMEDIATION_QUEUE: remediationQueueName
      BACKUPWARDEN_SWEEP_QUEUE: sweepQueueName
      BACKUPWARDEN_SWEEP_INLINE_MAX: string(sweepInlineMax)
      BACKUPWARDEN_ARM_READ_BUCKET: armReadBucket
      BACKUPWARDEN_ARM_WRITE_BUCKET: armWriteBucket
      BACKUPWARDEN_HTTP_RETRY_TOTAL: string(httpRetryTotal)
      BACKUPWARDEN_RETRY_AFTER_MAX: retryAfterMax
      BACKUPWARDEN_TIME_BUDGET: timeBudget
      BACKUPWARDEN_ENROLL_EXISTING: enrollExisting
      BACKUPWARDEN_COVERAGE_TARGET: string(coverageTarget)
      BACKUPWARDEN_OPERATION_POLL_TIMEOUT_S: string(operationPollTimeoutSeconds)
      BACKUPWARDEN_OPERATION_POLL_INTERVAL_S: operationPollIntervalSeconds
      BACKUPWARDEN_VAULT_RULES: vaultRules
      BACKUPWARDEN_PROVISIONING_RECHECK_S: string(provisioningRecheckSeconds)
      BACKUPWARDEN_MAX_PROVISIONING_WAITS: string(maxProvisioningWaits)
      BACKUPWARDEN_JOBS_OVERLAP: jobsOverlap
      BACKUPWARDEN_RETRY_CAP: string(retryCap)
      BACKUPWARDEN_RETRY_BACKOFF: retryBackoff
      BACKUPWARDEN_FAILURE_CLASSES: failureClasses
      BACKUPWARDEN_WEBHOOK_AUDIENCE: secureWebhook ? webhookAudience : ''
      BACKUPWARDEN_TENANT_ID: secureWebhook ? tenant().tenantId : ''
      BACKUPWARDEN_OPENID_CONFIGURATION_URL: openIdConfigurationUrl
    }
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    principalId: identity.outputs.IDENTITY_PRINCIPAL_ID
    storageAccountName: storage.outputs.STORAGE_ACCOUNT_NAME
    dataCollectionRuleName: monitoring.outputs.DATA_COLLECTION_RULE_NAME
    workspaceName: monitoring.outputs.LOG_ANALYTICS_WORKSPACE_NAME
    applicationInsightsName: appInsights.outputs.APPLICATIONINSIGHTS_NAME
    deployerPrincipalId: deployerPrincipalId
    deployerPrincipalType: deployerPrincipalType
  }
}

// vmWriteScope 'resourceGroups' with no group fails here, with the parameter named, instead of granting nothing.
module vmWriteGroupsCheck 'app/vm-write-groups-check.bicep' = if (vmWriteScope == 'resourceGroups') {
  name: 'vm-write-groups-check'
  scope: rg
  params: {
    vmResourceGroupIds: vmResourceGroupIdList
  }
}

module alerts 'app/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    workspaceResourceId: monitoring.outputs.LOG_ANALYTICS_WORKSPACE_RESOURCE_ID
    actionGroupName: 'ag-backupwarden-${resourceToken}'
    alertEmail: alertEmail
    functionAppName: functionApp.outputs.FUNCTION_APP_NAME
    webhookAuth: webhookAuth
    functionsDeployed: functionsDeployed
    secureWebhook: secureWebhook
    webhookEntraAppObjectId: webhookEntraAppObjectId
    webhookEntraAppIdUri: webhookAudience
  }
}

// Azure Backup's built-in job-failure alerts of the vaults in scope, to the same action group and webhook.
module backupAlertRouting 'app/backup-alert-routing.bicep' = {
  name: 'backup-alert-routing'
  scope: rg
  params: {
    tags: tags
    name: 'apr-backupwarden-${resourceToken}'
    subscriptionIds: [for subscriptionId in split(subscriptionsInScope, ','): trim(subscriptionId)]
    actionGroupId: alerts.outputs.ACTION_GROUP_RESOURCE_ID
  }
}

module workbook 'app/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    location: location
    tags: tags
    workspaceResourceId: monitoring.outputs.LOG_ANALYTICS_WORKSPACE_RESOURCE_ID
  }
}

// This subscription: its system topic lives in the app's resource group.
module deploymentSubscription 'subscription/scope.bicep' = {
  name: '${scopeDeploymentPrefix}-${subscription().subscriptionId}'
  params: {
    principalId: identity.outputs.IDENTITY_PRINCIPAL_ID
    location: location
    tags: tags
    eventsResourceGroupName: rg.name
    createEventsResourceGroup: false
    backupOperatorScope: backupOperatorScope
    vaultResourceGroupIds: vaultResourceGroupIdList
    vmWriteScope: vmWriteScope
    vmResourceGroupIds: vmResourceGroupIdList
    vmWriteRole: vmWriteRole
    existingSystemTopicId: existingSystemTopicId
    storageAccountResourceId: storage.outputs.STORAGE_ACCOUNT_RESOURCE_ID
    vmEventQueueName: vmEventQueueName
    deadLetterContainerName: deadLetterContainerName
  }
}

module additionalSubscriptions 'subscription/scope.bicep' = [for subscriptionId in additionalSubscriptionList: {
  name: '${scopeDeploymentPrefix}-${trim(subscriptionId)}'
  scope: subscription(trim(subscriptionId))
  params: {
    principalId: identity.outputs.IDENTITY_PRINCIPAL_ID
    location: location
    tags: tags
    eventsResourceGroupName: 'rg-${environmentName}-events'
    createEventsResourceGroup: true
    backupOperatorScope: backupOperatorScope
    vaultResourceGroupIds: vaultResourceGroupIdList
    vmWriteScope: vmWriteScope
    vmResourceGroupIds: vmResourceGroupIdList
    vmWriteRole: vmWriteRole
    storageAccountResourceId: storage.outputs.STORAGE_ACCOUNT_RESOURCE_ID
    vmEventQueueName: vmEventQueueName
    deadLetterContainerName: deadLetterContainerName
  }
}]

// azd reads these into the environment (.azure/<env>/.env); `azd env get-values` shows them.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.FUNCTION_APP_NAME
output BACKUPWARDEN_FUNCTION_APP_RESOURCE_ID string = functionApp.outputs.FUNCTION_APP_RESOURCE_ID
output BACKUPWARDEN_APP_PRINCIPAL_ID string = identity.outputs.IDENTITY_PRINCIPAL_ID
output BACKUPWARDEN_STORAGE_ACCOUNT_RESOURCE_ID string = storage.outputs.STORAGE_ACCOUNT_RESOURCE_ID
output BACKUPWARDEN_DEAD_LETTER_CONTAINER string = deadLetterContainerName
output BACKUPWARDEN_SUBSCRIPTIONS string = subscriptionsInScope
output BACKUPWARDEN_DCR_IMMUTABLE_ID string = monitoring.outputs.BACKUPWARDEN_DCR_IMMUTABLE_ID
output BACKUPWARDEN_LOGS_INGESTION_ENDPOINT string = monitoring.outputs.BACKUPWARDEN_LOGS_INGESTION_ENDPOINT
output BACKUPWARDEN_LOG_ANALYTICS_WORKSPACE_ID string = monitoring.outputs.BACKUPWARDEN_LOG_ANALYTICS_WORKSPACE_ID
