// The app's event stream: every IoT hub routes its twin changes to one event hub, which the
// app's twin_changed trigger reads through a consumer group of its own. Both ends use Entra:
// the hubs send with their identity, the app receives with its own.

param namespaceName string
param location string
param tags object
param eventHubName string
param consumerGroupName string
@description('Principal id of the identity the IoT hubs route with.')
param hubsPrincipalId string
param appPrincipalId string

var eventHubsDataSender = '2b629674-e913-4c01-ae53-ef4638d8f975'
var eventHubsDataReceiver = 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde'

resource namespace 'Microsoft.EventHub/namespaces@2024-01-01' = {
  // Standard: Basic allows only the $Default consumer group, which other readers share.
  name: namespaceName
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
    capacity: 1
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
    isAutoInflateEnabled: false
  }
}

resource eventHub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = {
  parent: namespace
  name: eventHubName
  properties: {
    partitionCount: 4
    messageRetentionInDays: 1
  }
}

resource consumerGroup 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = {
  parent: eventHub
  name: consumerGroupName
}

// IoT Hub checks the send right when an identity-based endpoint is created, so this assignment
// must exist before any hub: the hubs' module depends on this module.
resource hubsSend 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(eventHub.id, hubsPrincipalId, eventHubsDataSender)
  scope: eventHub
  properties: {
    principalId: hubsPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventHubsDataSender)
  }
}

resource appReceive 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(eventHub.id, appPrincipalId, eventHubsDataReceiver)
  scope: eventHub
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventHubsDataReceiver)
  }
}

output namespaceName string = namespace.name
output fullyQualifiedNamespace string = '${namespace.name}.servicebus.windows.net'
output eventHubName string = eventHub.name
output consumerGroupName string = consumerGroup.name
