// Everything the onboarding app needs on Azure, deployed by `azd up` into one resource group:
// the Function App (Flex Consumption) and its identity, storage, monitoring, the IoT hubs with
// their twin-change route, DPS linked to them, the asset system's Event Grid topic and the Key
// Vault. docs/deploy-azure.md walks through it.
targetScope = 'resourceGroup'

@minLength(1)
@maxLength(64)
@description('azd\'s environment name; it seeds the names of the resources.')
param environmentName string

@minLength(1)
@description('Region of every resource but the IoT hubs, which name their own.')
param location string = resourceGroup().location

@description('Base URL of the asset-management API (https://).')
param assetApiUrl string

@description('The asset API\'s Entra ID application (e.g. api://contoso-assets). Empty: the app sends the API key kept in Key Vault instead.')
param assetApiAudience string = ''

@secure()
@description('The asset API key, stored in Key Vault; leave empty with an audience, or to set the secret yourself later.')
param assetApiKey string = ''

@description('The routing and role policy the app loads, relative to the app root.')
param policyFile string = 'policies/demo.toml'

@description('The IoT hubs: [{ name, location?, sku?, units? }]. Empty: one S1 hub named after the environment. Twins need a standard (S) or free tier, not basic.')
param iotHubs array = []

@description('Python of the Function App (Flex Consumption documents 3.10 to 3.12).')
@allowed(['3.11', '3.12'])
param pythonVersion string = '3.12'

@description('The most instances Flex Consumption may scale the app to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Principal id of whoever runs azd (azd fills it): granted what the hooks and the operator CLI need. Empty: none.')
param operatorPrincipalId string = ''

@description('Principal id of the asset system\'s Event Grid publisher; empty to grant EventGrid Data Sender later.')
param assetEventPublisherPrincipalId string = ''

@description('Resource id of an existing action group the alert rules notify. Empty: the rules are created and fire in the portal, notifying no one.')
param alertActionGroupId string = ''

@description('Fallback allocations in 15 minutes above which the fallback alert fires.')
@minValue(0)
param alertFallbackThreshold int = 10

@description('Age in seconds of the oldest message waiting in the reconciliation queue above which the backlog alert fires.')
@minValue(60)
param alertBacklogAgeSeconds int = 600

var resourceToken = toLower(uniqueString(resourceGroup().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }

// The app's defaults (settings.StorageSettings); the app settings name them all the same.
var reconciliationQueue = 'reconciliation'
var deadLetterQueue = 'dead-letters'
var auditQueue = 'audit'
var auditTable = 'audit'
var twinEventsHub = 'twin-changes'
var twinEventsConsumerGroup = 'onboarding'
var deploymentContainerName = 'app-package'
var assetApiKeySecretName = 'asset-api-key'

var requestedHubs = empty(iotHubs) ? [{ name: 'iot-${resourceToken}' }] : iotHubs
var hubs = [
  for hub in requestedHubs: {
    name: hub.name
    location: contains(hub, 'location') ? hub.location : location
    sku: contains(hub, 'sku') ? hub.sku : 'S1'
    units: contains(hub, 'units') ? hub.units : 1
  }
]

resource appIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-app-${resourceToken}'
  location: location
  tags: tags
}

// Separate from the app's: the hubs only send to the event hub, the app only receives.
resource hubsIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-hubs-${resourceToken}'
  location: location
  tags: tags
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    // The poison queue of reconciliation is read by a trigger of its own.
    queueNames: [reconciliationQueue, '${reconciliationQueue}-poison', deadLetterQueue, auditQueue]
    auditTableName: auditTable
    appPrincipalId: appIdentity.properties.principalId
    operatorPrincipalId: operatorPrincipalId
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
    appPrincipalId: appIdentity.properties.principalId
  }
}

module workbook 'modules/workbook.bicep' = {
  name: 'workbook'
  params: {
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  params: {
    namePrefix: 'alert-${resourceToken}'
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    actionGroupId: alertActionGroupId
    fallbackThreshold: alertFallbackThreshold
    backlogAgeThresholdSeconds: alertBacklogAgeSeconds
  }
}

module eventStream 'modules/event-stream.bicep' = {
  name: 'event-stream'
  params: {
    namespaceName: 'evhns-${resourceToken}'
    location: location
    tags: tags
    eventHubName: twinEventsHub
    consumerGroupName: twinEventsConsumerGroup
    hubsPrincipalId: hubsIdentity.properties.principalId
    appPrincipalId: appIdentity.properties.principalId
  }
}

module iotHubModules 'modules/iot-hub.bicep' = [
  for hub in hubs: {
    name: 'iot-hub-${hub.name}'
    params: {
      name: hub.name
      location: hub.location
      tags: tags
      skuName: hub.sku
      units: hub.units
      routingIdentityId: hubsIdentity.id
      eventHubsNamespace: eventStream.outputs.namespaceName
      eventHubName: eventStream.outputs.eventHubName
      appPrincipalId: appIdentity.properties.principalId
      operatorPrincipalId: operatorPrincipalId
    }
    // The hubs' identity must hold Event Hubs Data Sender (granted in eventStream) before a hub
    // creates its identity-based endpoint, or the hub refuses the endpoint.
    dependsOn: [
      eventStream
    ]
  }
]

var hubNames = [for (hub, i) in hubs: iotHubModules[i].outputs.name]
var hubHostNames = [for (hub, i) in hubs: iotHubModules[i].outputs.hostName]

module dps 'modules/dps.bicep' = {
  name: 'dps'
  params: {
    name: 'provs-${resourceToken}'
    location: location
    tags: tags
    hubs: [
      for (hub, i) in hubs: {
        name: iotHubModules[i].outputs.name
        hostName: iotHubModules[i].outputs.hostName
        location: iotHubModules[i].outputs.location
      }
    ]
    operatorPrincipalId: operatorPrincipalId
  }
}

module assetEvents 'modules/event-grid.bicep' = {
  name: 'asset-events'
  params: {
    name: 'evgt-${resourceToken}'
    location: location
    tags: tags
    publisherPrincipalId: assetEventPublisherPrincipalId
  }
}

module keyVault 'modules/key-vault.bicep' = {
  name: 'key-vault'
  params: {
    name: 'kv-${resourceToken}'
    location: location
    tags: tags
    appPrincipalId: appIdentity.properties.principalId
    assetApiKey: assetApiKey
    assetApiKeySecretName: assetApiKeySecretName
    operatorPrincipalId: operatorPrincipalId
    operatorReadsKey: empty(assetApiAudience)
  }
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  params: {
    name: 'func-${resourceToken}'
    planName: 'plan-${resourceToken}'
    location: location
    tags: tags
    identityId: appIdentity.id
    identityClientId: appIdentity.properties.clientId
    pythonVersion: pythonVersion
    maximumInstanceCount: maximumInstanceCount
    storageBlobEndpoint: storage.outputs.blobEndpoint
    storageQueueEndpoint: storage.outputs.queueEndpoint
    storageTableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerName: deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    assetApiUrl: assetApiUrl
    assetApiAudience: assetApiAudience
    keyVaultName: keyVault.outputs.name
    assetApiKeySecretName: assetApiKeySecretName
    policyFile: policyFile
    hubHostNames: hubHostNames
    reconciliationQueue: reconciliationQueue
    deadLetterQueue: deadLetterQueue
    auditQueue: auditQueue
    auditTable: auditTable
    eventHubsFullyQualifiedNamespace: eventStream.outputs.fullyQualifiedNamespace
    twinEventsHub: eventStream.outputs.eventHubName
    twinEventsConsumerGroup: eventStream.outputs.consumerGroupName
  }
}

// azd stores every output in the environment (.azure/<env>/.env); the hooks read them from there.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = resourceGroup().name
output FUNCTION_APP_NAME string = functionApp.outputs.name
output FUNCTION_APP_ID string = functionApp.outputs.id
output FUNCTION_APP_HOST string = functionApp.outputs.defaultHostName
output APP_IDENTITY_CLIENT_ID string = appIdentity.properties.clientId
output DPS_NAME string = dps.outputs.name
output DPS_SERVICE_HOST string = dps.outputs.serviceOperationsHostName
output DPS_DEVICE_HOST string = dps.outputs.deviceProvisioningHostName
output DPS_ID_SCOPE string = dps.outputs.idScope
output IOT_HUB_NAMES string = join(hubNames, ',')
output IOT_HUB_HOST_NAMES string = join(hubHostNames, ',')
output STORAGE_ACCOUNT_NAME string = storage.outputs.name
// The operator CLI finds the app's storage by the app's own setting names; without
// __credential it signs in as whoever runs it.
output AzureWebJobsStorage__queueServiceUri string = storage.outputs.queueEndpoint
output AzureWebJobsStorage__tableServiceUri string = storage.outputs.tableEndpoint
output AzureWebJobsStorage__blobServiceUri string = storage.outputs.blobEndpoint
output EVENT_GRID_TOPIC_NAME string = assetEvents.outputs.name
output EVENT_GRID_TOPIC_ID string = assetEvents.outputs.id
output EVENT_GRID_TOPIC_ENDPOINT string = assetEvents.outputs.endpoint
output EVENT_HUBS_NAMESPACE string = eventStream.outputs.fullyQualifiedNamespace
output KEY_VAULT_NAME string = keyVault.outputs.name
output KEY_VAULT_URI string = keyVault.outputs.uri
output ASSET_API_KEY_SECRET_NAME string = assetApiKeySecretName
output APPLICATION_INSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
// What the postdeploy hook hands the enrollment and smoke commands (infra/hooks/postdeploy.sh).
output AUDIT_TABLE string = auditTable
output ASSET_API_URL string = assetApiUrl
output ASSET_API_AUDIENCE string = assetApiAudience
output POLICY_FILE string = policyFile
