// Log search alert rules on the app's metrics in Application Insights (customMetrics). Each
// query is a file beside this one, runnable as it is in the resource's Logs. The rules exist
// whether or not an action group is given: a fired alert shows in the portal's Alerts either way.

param namePrefix string
param location string
param tags object
param applicationInsightsId string
@description('Resource id of an existing action group the rules notify; empty: none.')
param actionGroupId string = ''
@description('Fallback allocations in 15 minutes above which the fallback rule fires.')
@minValue(0)
param fallbackThreshold int
@description('Age in seconds of the oldest reconciliation message above which the backlog rule fires.')
@minValue(60)
param backlogAgeThresholdSeconds int

var actionGroups = empty(actionGroupId) ? [] : [actionGroupId]

var rules = [
  {
    name: 'dead-letters'
    properties: {
      displayName: 'Dead letters'
      description: 'A reconciliation message was dead-lettered, or letters wait in the dead-letter queue: list and replay them with the operator CLI.'
      severity: 2
      evaluationFrequency: 'PT5M'
      windowSize: 'PT10M'
      criteria: {
        allOf: [
          {
            query: loadTextContent('alerts/dead-letters.kql')
            timeAggregation: 'Maximum'
            metricMeasureColumn: 'deadLetters'
            operator: 'GreaterThan'
            threshold: 0
          }
        ]
      }
    }
  }
  {
    name: 'breaker-open'
    properties: {
      displayName: 'Circuit breaker open for 5 minutes'
      description: 'A dependency\'s circuit breaker has not closed for five minutes on an instance: the dependency is down or refusing the app.'
      severity: 1
      evaluationFrequency: 'PT1M'
      windowSize: 'PT5M'
      // The query judges the five minutes up to each instance's latest report, which ingestion
      // delay puts a few minutes back: it reads ten.
      overrideQueryTimeRange: 'PT10M'
      criteria: {
        allOf: [
          {
            query: loadTextContent('alerts/breaker-open.kql')
            timeAggregation: 'Count'
            operator: 'GreaterThan'
            threshold: 0
            dimensions: [
              {
                name: 'dependency'
                operator: 'Include'
                values: ['*']
              }
            ]
          }
        ]
      }
    }
  }
  {
    name: 'fallbacks'
    properties: {
      displayName: 'Fallback allocations'
      description: 'Devices are being onboarded with the fallback role because the asset system is unavailable; reconciliation finishes them later.'
      severity: 2
      evaluationFrequency: 'PT5M'
      windowSize: 'PT15M'
      criteria: {
        allOf: [
          {
            query: loadTextContent('alerts/fallbacks.kql')
            timeAggregation: 'Total'
            metricMeasureColumn: 'fallbacks'
            operator: 'GreaterThan'
            threshold: fallbackThreshold
          }
        ]
      }
    }
  }
  {
    name: 'backlog-age'
    properties: {
      displayName: 'Reconciliation backlog too old'
      description: 'The oldest message waiting in a reconciliation queue is older than the threshold: reconciliation is stalled or falling behind.'
      severity: 2
      evaluationFrequency: 'PT5M'
      windowSize: 'PT10M'
      criteria: {
        allOf: [
          {
            query: loadTextContent('alerts/backlog-age.kql')
            timeAggregation: 'Maximum'
            metricMeasureColumn: 'ageSeconds'
            operator: 'GreaterThan'
            threshold: backlogAgeThresholdSeconds
            dimensions: [
              {
                name: 'queue'
                operator: 'Include'
                values: ['*']
              }
            ]
          }
        ]
      }
    }
  }
]

resource alertRules 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [
  for rule in rules: {
    name: '${namePrefix}-${rule.name}'
    location: location
    tags: tags
    kind: 'LogAlert'
    properties: union(rule.properties, {
      enabled: true
      scopes: [applicationInsightsId]
      autoMitigate: true
      actions: {
        actionGroups: actionGroups
      }
    })
  }
]
