// Cosmos DB for NoSQL, serverless (pay per request unit, nothing provisioned), Entra ID only: account keys are
// disabled (disableLocalAuth) and so are key-based metadata writes. The app identity gets the built-in
// "Cosmos DB Built-in Data Contributor" data-plane role in rbac.bicep.

param name string
param location string
param tags object
param databaseName string

resource account 'Microsoft.DocumentDB/databaseAccounts@2024-05-15' = {
  name: name
  location: location
  tags: tags
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    consistencyPolicy: {
      defaultConsistencyLevel: 'Session'
    }
    locations: [
      {
        locationName: location
        failoverPriority: 0
        isZoneRedundant: false
      }
    ]
    capabilities: [
      {
        name: 'EnableServerless'
      }
    ]
    disableLocalAuth: true
    disableKeyBasedMetadataWriteAccess: true
    minimalTlsVersion: 'Tls12'
    publicNetworkAccess: 'Enabled'
  }
}

resource database 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-05-15' = {
  parent: account
  name: databaseName
  properties: {
    resource: {
      id: databaseName
    }
  }
}

// Partition keys are part of the data model (functions/core): changing one means a new container and a migration.
// defaultTtl -1 turns per-item ttl on without expiring anything by itself: in `loras`, rejected records and abandoned
// upload sessions carry their own ttl (functions/core/loras/retention.ts); jobs and machines set none.
var containers = [
  {
    name: 'loras'
    partitionKey: '/owner_id'
  }
  {
    name: 'jobs'
    partitionKey: '/tenant_id'
  }
  {
    name: 'machines'
    partitionKey: '/machine_id'
  }
]

// Serverless: no options.throughput / autoscaleSettings anywhere.
resource sqlContainers 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-05-15' = [
  for c in containers: {
    parent: database
    name: c.name
    properties: {
      resource: {
        id: c.name
        partitionKey: {
          paths: [
            c.partitionKey
          ]
          kind: 'Hash'
        }
        defaultTtl: -1
      }
    }
  }
]

// Progress and log events: Cosmos deletes them 7 days after their last write.
resource eventsContainer 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-05-15' = {
  parent: database
  name: 'events'
  properties: {
    resource: {
      id: 'events'
      partitionKey: {
        paths: [
          '/job_id'
        ]
        kind: 'Hash'
      }
      defaultTtl: 604800
    }
  }
}

output name string = account.name
output endpoint string = account.properties.documentEndpoint
output databaseName string = database.name
