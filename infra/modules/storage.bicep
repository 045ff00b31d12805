// The Functions host's storage account, which also holds the app's queues and audit table.
// Shared keys are off: the host, the app and the deployment all reach it with Entra tokens.

param name string
param location string
param tags object
param deploymentContainerName string
@description('Queue names, as the app settings name them.')
param queueNames array
param auditTableName string
@description('Principal id of the app\'s user-assigned identity.')
param appPrincipalId string
@description('Principal id of the operator running azd (its hooks and the operator CLI); empty for none.')
param operatorPrincipalId string = ''

// Built-in role definition ids (Microsoft's "Azure built-in roles" page).
var blobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var queueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var tableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var tableDataReader = '76199698-9eea-4c19-bc75-cec21354c6b6'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  //checkov:skip=CKV_AZURE_59:Flex Consumption without a virtual network reaches its storage over the public endpoint; every request still needs an Entra token (shared keys are off)
  //checkov:skip=CKV_AZURE_35:same as CKV_AZURE_59: a Flex Consumption app outside a virtual network is not a trusted service the storage firewall lets through
  //checkov:skip=CKV_AZURE_206:the queues and audit trail are operational state of one region's app; LRS keeps the cost of a trial low (raise the SKU for production)
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    isLocalUserEnabled: false
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobs
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for queueName in queueNames: {
    parent: queueService
    name: queueName
  }
]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource auditTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: auditTableName
}

// The host keeps its keys, leases and Event Hubs checkpoints in blobs (Blob Data Owner, as
// Microsoft documents for identity-based AzureWebJobsStorage); the app sends to and the host
// reads from the queues; the audit writer writes the table.
var appRoles = [blobDataOwner, queueDataContributor, tableDataContributor]

resource appRoleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in appRoles: {
    name: guid(account.id, appPrincipalId, role)
    scope: account
    properties: {
      principalId: appPrincipalId
      principalType: 'ServicePrincipal'
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
    }
  }
]

// The operator CLI lists and replays dead letters (queues) and reads the audit table.
var operatorRoles = empty(operatorPrincipalId) ? [] : [queueDataContributor, tableDataReader]

resource operatorRoleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in operatorRoles: {
    name: guid(account.id, operatorPrincipalId, role)
    scope: account
    properties: {
      principalId: operatorPrincipalId
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
    }
  }
]

output name string = account.name
output id string = account.id
output blobEndpoint string = account.properties.primaryEndpoints.blob
output queueEndpoint string = account.properties.primaryEndpoints.queue
output tableEndpoint string = account.properties.primaryEndpoints.table
