// The topic the asset system publishes its change events to, in the CloudEvents 1.0 schema.
// The subscription to the app's asset_changed function is made by the postdeploy hook: Event
// Grid checks the function when the subscription is created, so the code must be deployed first.

param name string
param location string
param tags object
@description('Principal id of the asset system\'s publisher; empty to grant it later.')
param publisherPrincipalId string = ''

var eventGridDataSender = 'd5a91429-5739-47e2-a06b-3470a27159e7'

resource topic 'Microsoft.EventGrid/topics@2025-02-15' = {
  //checkov:skip=CKV_AZURE_193:the asset system publishes from outside Azure's network; access keys are off (disableLocalAuth), so a publisher needs an Entra token with EventGrid Data Sender
  name: name
  location: location
  tags: tags
  identity: {
    type: 'None'
  }
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
    minimumTlsVersionAllowed: '1.2'
  }
}

resource publisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(publisherPrincipalId)) {
  name: guid(topic.id, publisherPrincipalId, eventGridDataSender)
  scope: topic
  properties: {
    principalId: publisherPrincipalId
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSender)
  }
}

output name string = topic.name
output id string = topic.id
output endpoint string = topic.properties.endpoint
