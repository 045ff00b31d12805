// The Function App on Flex Consumption. It runs as a user-assigned identity and holds no key:
// storage, Event Hubs, IoT Hub, Application Insights and the asset API (by audience) are all
// reached with that identity's tokens; an asset API key, when one is needed, is a Key Vault
// reference. tests/unit/test_infra.py checks these settings against what the app reads.

param name string
param planName string
param location string
param tags object
param identityId string
param identityClientId string
@allowed(['3.11', '3.12'])
param pythonVersion string
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int
param storageBlobEndpoint string
param storageQueueEndpoint string
param storageTableEndpoint string
param deploymentContainerName string
param applicationInsightsConnectionString string
param assetApiUrl string
param assetApiAudience string
param keyVaultName string
param assetApiKeySecretName string
param policyFile string
@description('Host names of the IoT hubs the app reaches with its identity.')
param hubHostNames array
param reconciliationQueue string
param deadLetterQueue string
param auditQueue string
param auditTable string
param eventHubsFullyQualifiedNamespace string
param twinEventsHub string
param twinEventsConsumerGroup string

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  //checkov:skip=CKV_AZURE_225:Flex Consumption's zone redundancy is a per-region option with its own instance minimums; left to the operator (see docs/deploy-azure.md)
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  //checkov:skip=CKV_AZURE_222:DPS calls the allocation webhook over the internet and cannot reach a private endpoint; the function key guards it
  //checkov:skip=CKV_AZURE_212:Flex Consumption has no plan worker count to raise; one always-ready HTTP instance and on-demand scale-out stand in for it
  //checkov:skip=CKV_AZURE_213:App Service health check calls an anonymous path, and every function here needs its key; the host's own restarts and DPS's retries cover a failed instance
  //checkov:skip=CKV_AZURE_17:DPS presents no client certificate to the webhook; the device's certificate travels inside the request and the app verifies it
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'app' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Key Vault references resolve with this identity (a site has no system identity here).
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: 2048
        maximumInstanceCount: maximumInstanceCount
        // DPS waits on the webhook: one warm instance of the HTTP group spares a device's
        // registration a cold start.
        alwaysReady: [
          {
            name: 'http'
            instanceCount: 1
          }
        ]
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

// One of the two ways to the asset API: Entra tokens for its audience, else its key from Key Vault.
var assetApiKeyReference = '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=${assetApiKeySecretName})'
var assetApiAuth = empty(assetApiAudience) ? { ASSET_API_KEY: assetApiKeyReference } : { ASSET_API_AUDIENCE: assetApiAudience }

var settings = {
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AzureWebJobsStorage__blobServiceUri: storageBlobEndpoint
  AzureWebJobsStorage__queueServiceUri: storageQueueEndpoint
  AzureWebJobsStorage__tableServiceUri: storageTableEndpoint
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD;ClientId=${identityClientId}'
  AZURE_CLIENT_ID: identityClientId
  ASSET_API_URL: assetApiUrl
  POLICY_FILE: policyFile
  IOT_HUB_MANAGED_IDENTITY_HUBS: join(hubHostNames, ',')
  RECONCILIATION_QUEUE: reconciliationQueue
  DEAD_LETTER_QUEUE: deadLetterQueue
  AUDIT_QUEUE: auditQueue
  AUDIT_TABLE: auditTable
  TWIN_EVENTS_HUB: twinEventsHub
  TWIN_EVENTS_CONSUMER_GROUP: twinEventsConsumerGroup
  IOT_HUB_EVENTS_CONNECTION__fullyQualifiedNamespace: eventHubsFullyQualifiedNamespace
  IOT_HUB_EVENTS_CONNECTION__credential: 'managedidentity'
  IOT_HUB_EVENTS_CONNECTION__clientId: identityClientId
}

// checkov reads every sites/config resource as the `web` config (siteConfig); these checks look
// for siteConfig properties this `appsettings` resource cannot have, or are skipped on the site.
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  //checkov:skip=CKV_AZURE_13:App Service Authentication would demand an Entra token DPS cannot send; the webhook is guarded by its function key
  //checkov:skip=CKV_AZURE_63:a siteConfig property (HTTP logging), not an app setting; the app logs to Application Insights
  //checkov:skip=CKV_AZURE_65:a siteConfig property (detailed errors), not an app setting
  //checkov:skip=CKV_AZURE_66:a siteConfig property (failed request tracing), not an app setting
  //checkov:skip=CKV_AZURE_80:the app runs Python, not .NET
  //checkov:skip=CKV_AZURE_88:Azure Files mounts do not apply: Flex Consumption deploys from the blob container
  //checkov:skip=CKV_AZURE_222:as on the site: DPS must reach the webhook over the internet
  parent: site
  name: 'appsettings'
  properties: union(settings, assetApiAuth)
}

output name string = site.name
output id string = site.id
output defaultHostName string = site.properties.defaultHostName
