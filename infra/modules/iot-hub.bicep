// One IoT hub: twin changes routed to the app's event hub (identity-based), device telemetry
// kept on the built-in endpoint, and the app's identity allowed to manage devices and twins on
// this hub alone. The operator running azd gets the same two roles here: the post-deploy smoke
// test reads its throwaway device and twin on the hub DPS chose, and deletes the device.

param name string
param location string
param tags object
param skuName string
param units int
@description('Resource id of the user-assigned identity the hub routes with; it must already hold Azure Event Hubs Data Sender on the event hub.')
param routingIdentityId string
param eventHubsNamespace string
param eventHubName string
param appPrincipalId string
@description('Principal id of the operator running azd (the smoke test); empty for none.')
param operatorPrincipalId string = ''

var iotHubRegistryContributor = '4ea46cd5-c1b2-4a8e-910b-273211f9ce47'
var iotHubTwinContributor = '494bdba2-168f-4f31-a0a1-191d2f7c028c'
var twinEndpoint = 'app-twin-changes'

resource hub 'Microsoft.Devices/IotHubs@2023-06-30' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: skuName
    capacity: units
  }
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${routingIdentityId}': {}
    }
  }
  properties: {
    // Devices attest with X.509, never with a SAS token. Local auth (the hub's shared access
    // policies) stays on: DPS links a hub with a policy's connection string.
    disableDeviceSAS: true
    disableModuleSAS: true
    disableLocalAuth: false
    minTlsVersion: '1.2'
    routing: {
      endpoints: {
        eventHubs: [
          {
            name: twinEndpoint
            authenticationType: 'identityBased'
            identity: {
              userAssignedIdentity: routingIdentityId
            }
            endpointUri: 'sb://${eventHubsNamespace}.servicebus.windows.net'
            entityPath: eventHubName
          }
        ]
      }
      routes: [
        {
          name: 'twin-changes-to-app'
          source: 'TwinChangeEvents'
          condition: 'true'
          endpointNames: [twinEndpoint]
          isEnabled: true
        }
      ]
      // A custom route takes device messages off the built-in endpoint unless the fallback
      // route stays on: telemetry keeps flowing to `events` as before.
      fallbackRoute: {
        name: '$fallback'
        source: 'DeviceMessages'
        condition: 'true'
        endpointNames: ['events']
        isEnabled: true
      }
    }
  }
}

var appRoles = [iotHubRegistryContributor, iotHubTwinContributor]

resource appRoleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in appRoles: {
    name: guid(hub.id, appPrincipalId, role)
    scope: hub
    properties: {
      principalId: appPrincipalId
      principalType: 'ServicePrincipal'
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
    }
  }
]

// The smoke test (operator CLI, signed in as the operator) reads the device it registered and
// its twin, then deletes the device. Registry Contributor covers the device identity, Twin
// Contributor the twin read (the smallest role among the ones this template grants that does).
var operatorRoles = empty(operatorPrincipalId) ? [] : appRoles

resource operatorRoleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in operatorRoles: {
    name: guid(hub.id, operatorPrincipalId, role)
    scope: hub
    properties: {
      principalId: operatorPrincipalId
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
    }
  }
]

output name string = hub.name
output hostName string = hub.properties.hostName
output location string = hub.location
