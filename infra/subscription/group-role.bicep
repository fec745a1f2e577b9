// One role assignment on one resource group (a vault's, or a group of VMs to protect), for the
// app's managed identity. The role is chosen by the caller (scope.bicep), from its named role ids.

@description('Principal (object) id of the app\'s managed identity.')
param principalId string

@description('Full resource id of the role definition to assign.')
param roleDefinitionId string

@description('Why the app holds this role here (shown in the portal).')
param assignmentDescription string

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, principalId, roleDefinitionId)
  properties: {
    roleDefinitionId: roleDefinitionId
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: assignmentDescription
  }
}

output ROLE_ASSIGNMENT_ID string = assignment.id
