// The one secret left when the asset system takes no Entra tokens: its API key. The vault uses
// Azure RBAC; the app reads the secret through a Key Vault reference with its own identity.

param name string
param location string
param tags object
param appPrincipalId string
@secure()
@description('The asset API key; empty when the app calls the asset API with Entra tokens.')
param assetApiKey string = ''
param assetApiKeySecretName string
@description('Principal id of the operator running azd; empty for none. With operatorReadsKey, the post-deploy smoke test reads the asset API key as the operator.')
param operatorPrincipalId string = ''
@description('True when the app calls the asset API with the key (no audience): the smoke test then needs the key too.')
param operatorReadsKey bool = false

var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  //checkov:skip=CKV_AZURE_110:purge protection would keep the vault's name taken for the retention period after `azd down --purge`; soft delete stays on
  //checkov:skip=CKV_AZURE_42:same as CKV_AZURE_110: soft delete is on, purge protection is off so a trial can be torn down and redeployed
  //checkov:skip=CKV_AZURE_109:the Functions platform resolves Key Vault references from outside any virtual network this template could name; every read needs an Entra token and Key Vault Secrets User
  //checkov:skip=CKV_AZURE_189:same as CKV_AZURE_109: public network access is needed without a virtual network
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource assetKey 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(assetApiKey)) {
  //checkov:skip=CKV_AZURE_114:contentType is set below; checkov's Bicep reader does not look inside the body of a conditional (`if`) resource
  //checkov:skip=CKV_AZURE_41:the key's lifetime is the asset system's to set; an expiry here would silently break the app when it passes
  parent: vault
  name: assetApiKeySecretName
  properties: {
    value: assetApiKey
    contentType: 'text/plain'
  }
}

resource appReadsSecrets 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, appPrincipalId, keyVaultSecretsUser)
  scope: vault
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
  }
}

// The smoke test calls the asset API as the app does; with a key, it reads the key at hook time.
resource operatorReadsSecrets 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (operatorReadsKey && !empty(operatorPrincipalId)) {
  name: guid(vault.id, operatorPrincipalId, keyVaultSecretsUser)
  scope: vault
  properties: {
    principalId: operatorPrincipalId
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
