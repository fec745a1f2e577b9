// The private-network mode (main.bicep's vnetEnabled, azd's VNET_ENABLED), as in Azure-Samples'
// functions-quickstart-python-http-azd (infra/app/vnet.bicep, storage-PrivateEndpoint.bicep): a virtual
// network whose app subnet the Flex Consumption app joins, and a private endpoint with its private DNS
// zone for each storage service the app uses: blob (the Functions host, the deployment package), queue
// and table (backupwarden's work queues, ledger and outbox).

@description('Azure region of the virtual network and the private endpoints.')
param location string

@description('Tags put on every resource.')
param tags object = {}

@description('Name of the virtual network.')
param name string

@description('Resource id of the app\'s storage account.')
param storageAccountResourceId string

@description('Name of that account (names the private endpoints).')
param storageAccountName string

@description('Address space of the virtual network.')
param addressPrefix string = '10.0.0.0/16'

@description('Subnet the function app integrates with.')
param appSubnetPrefix string = '10.0.1.0/24'

@description('Subnet holding the private endpoints.')
param privateEndpointSubnetPrefix string = '10.0.2.0/24'

var appSubnetName = 'app'
var privateEndpointSubnetName = 'private-endpoints'
var storageServices = [
  'blob'
  'queue'
  'table'
]

resource virtualNetwork 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: appSubnetName
        properties: {
          addressPrefix: appSubnetPrefix
          // Flex Consumption integrates with a subnet delegated to Microsoft.App/environments
          // (https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#virtual-network-integration).
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
      {
        name: privateEndpointSubnetName
        properties: {
          addressPrefix: privateEndpointSubnetPrefix
          privateEndpointNetworkPolicies: 'Disabled'
        }
      }
    ]
  }
}

// privatelink.<service>.core.windows.net in the public cloud
// (https://learn.microsoft.com/azure/private-link/private-endpoint-dns#storage).
resource dnsZones 'Microsoft.Network/privateDnsZones@2024-06-01' = [for service in storageServices: {
  name: 'privatelink.${service}.${environment().suffixes.storage}'
  location: 'global'
  tags: tags
}]

resource dnsZoneLinks 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = [for (service, index) in storageServices: {
  parent: dnsZones[index]
  name: name
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: virtualNetwork.id
    }
  }
}]

resource privateEndpoints 'Microsoft.Network/privateEndpoints@2024-05-01' = [for service in storageServices: {
  name: 'pe-${storageAccountName}-${service}'
  location: location
  tags: tags
  properties: {
    subnet: {
      id: '${virtualNetwork.id}/subnets/${privateEndpointSubnetName}'
    }
    privateLinkServiceConnections: [
      {
        name: service
        properties: {
          privateLinkServiceId: storageAccountResourceId
          groupIds: [
            service
          ]
        }
      }
    ]
  }
}]

// The endpoint's A record in its service's zone, kept by Azure as the endpoint changes.
resource dnsZoneGroups 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-05-01' = [for (service, index) in storageServices: {
  parent: privateEndpoints[index]
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: service
        properties: {
          privateDnsZoneId: dnsZones[index].id
        }
      }
    ]
  }
}]

output APP_SUBNET_ID string = '${virtualNetwork.id}/subnets/${appSubnetName}'
