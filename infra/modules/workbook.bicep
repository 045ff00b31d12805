// The operations workbook, shared and linked to Application Insights, so it is listed under the
// resource's Workbooks. Its content is workbook.json, the portal's own format: edit it in the
// portal's Advanced Editor and paste it back here.

param location string
param tags object
param applicationInsightsId string
param displayName string = 'DPS onboarding operations'

var content = union(loadJsonContent('workbook.json'), {
  fallbackResourceIds: [applicationInsightsId]
})

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  // A workbook's name must be a GUID; this one is stable per Application Insights resource.
  name: guid(applicationInsightsId, 'operations-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: applicationInsightsId
    serializedData: string(content)
  }
}

output id string = workbook.id
