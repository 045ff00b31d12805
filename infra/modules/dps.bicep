// The Device Provisioning Service, linked to every IoT hub. Enrollment groups (with the custom
// allocation webhook) are not ARM resources: the postdeploy hook applies them through DPS's
// service API once the function exists.

param name string
param location string
param tags object
@description('The linked hubs: [{ name, hostName, location }].')
param hubs array
@description('Principal id of the operator running azd; empty for none. It applies the enrollment groups.')
param operatorPrincipalId string = ''

var dpsDataContributor = 'dfce44e4-17b7-4bd1-a6d1-04996ec95633'

resource dps 'Microsoft.Devices/provisioningServices@2022-12-12' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: 'S1'
    capacity: 1
  }
  properties: {
    // The service-wide policy; each enrollment group overrides it with the custom webhook.
    allocationPolicy: 'Hashed'
    publicNetworkAccess: 'Enabled'
    // The generally available API links a hub only by a shared access policy's connection
    // string (iothubowner, as Microsoft's DPS templates do); it never leaves the deployment.
    iotHubs: [
      for hub in hubs: {
        location: hub.location
        connectionString: 'HostName=${hub.hostName};SharedAccessKeyName=iothubowner;SharedAccessKey=${listKeys(resourceId('Microsoft.Devices/IotHubs/IotHubKeys', hub.name, 'iothubowner'), '2023-06-30').primaryKey}'
      }
    ]
  }
}

resource operatorEnrollments 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(dps.id, operatorPrincipalId, dpsDataContributor)
  scope: dps
  properties: {
    principalId: operatorPrincipalId
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', dpsDataContributor)
  }
}

output name string = dps.name
output id string = dps.id
output serviceOperationsHostName string = dps.properties.serviceOperationsHostName
output deviceProvisioningHostName string = dps.properties.deviceProvisioningHostName
output idScope string = dps.properties.idScope
