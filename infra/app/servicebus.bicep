// Service Bus namespace + the `jobs` queue that carries dispatch messages to GPU machines. Sessions route each
// message to one machine (session id = machine id), so the tier must be Standard or Premium (Basic has no sessions).
// Entra ID only: SAS keys are disabled (disableLocalAuth), so no connection string exists for anyone to use.
// The app identity gets Data Sender and the fleet principal Data Receiver on this queue (rbac.bicep).

param name string
param location string
param tags object
param queueName string

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

resource queue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: namespace
  name: queueName
  properties: {
    requiresSession: true
    // The session lock is held for the whole job: the agent renews it every LOCK_RENEW_SECONDS (20 s) and the SDK
    // auto-renews it too. After a dropped connection or a dead agent the broker keeps the lock this long, and the
    // machine reports "session busy" (receiving: false) until it lapses: keep it short.
    lockDuration: 'PT1M'
    maxDeliveryCount: 10
    deadLetteringOnMessageExpiration: true
    // The scheduler sets MessageId per (job, epoch): a re-sent dispatch within 10 minutes is dropped by the broker.
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'PT10M'
    // A dispatch nobody picked up in a day is stale: the reaper has long since re-routed that job.
    defaultMessageTimeToLive: 'P1D'
    enablePartitioning: false
    maxSizeInMegabytes: 1024
  }
}

output name string = namespace.name
// e.g. sb-abc123.servicebus.windows.net (derived from the endpoint so that sovereign clouds work too)
output fullyQualifiedNamespace string = replace(replace(namespace.properties.serviceBusEndpoint, 'https://', ''), ':443/', '')
output queueName string = queue.name
