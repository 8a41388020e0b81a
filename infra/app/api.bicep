// The Functions app (the repo root: Node v4 programming model, compiled to dist/) on a Flex Consumption plan,
// running as the user-assigned identity, and ALL of its app settings.
//
// App settings are the `siteConfig.appSettings` list below. It is a whole-collection write: a setting that is not in
// this list is removed from the app by the next `azd provision`, so change settings here (or through the parameters
// in main.bicep / `azd env set`), not in the portal. Names must match SETTINGS in functions/core/config.ts;
// test/infra-settings.test.ts checks that, and that loadConfig() accepts what this file produces.
//
// Flex Consumption takes the runtime from functionAppConfig.runtime and rejects FUNCTIONS_WORKER_RUNTIME,
// FUNCTIONS_EXTENSION_VERSION, WEBSITE_NODE_DEFAULT_VERSION and WEBSITE_RUN_FROM_PACKAGE, so none of them appear here.

param name string
param planName string
param location string
param tags object

param identityId string
param identityClientId string

param storageAccountName string
param deploymentContainerName string
param applicationInsightsName string
param cosmosEndpoint string
param serviceBusFullyQualifiedNamespace string

@description('Versionless Key Vault secret URI of the machine-token HMAC secret.')
param machineTokenReferenceUri string

// Names of things the code reads.
param userLoraContainerName string
param sharedLoraContainerName string
param cosmosDatabaseName string
param serviceBusQueueName string

// Entra ID (AUTH_MODE=entra).
param authIssuer string
param authAudience string
param authJwksUri string
param authAdminRole string

// Scheduling and limits. Strings because app settings are strings; the app validates them at startup.
param schedulerPolicy string
param schedulerSchedule string
param reaperSchedule string
param schedulerWeights string
param machineLivenessSeconds string
param claimTimeoutSeconds string
param jobMaxAttempts string
param jobRetryBaseSeconds string
param tenantMaxActiveJobs string
param userMaxLoras string
param userMaxLoraBytes string
param uploadSessionMinutes string
param downloadSasMinutes string

// Flex Consumption scale: the values the platform accepts (instance memory 512 where offered, 2048, 4096; at least
// 40 maximum instances).
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true // Linux
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  // azd finds the app to deploy the `api` service (azure.yaml) into by this tag.
  tags: union(tags, {
    'azd-service-name': 'api'
  })
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
    // The identity that resolves @Microsoft.KeyVault(...) references. The default is the system-assigned identity,
    // which this app does not have.
    keyVaultReferenceIdentity: identityId
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'node'
        version: '22'
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      appSettings: [
        // ---- Functions host (identity-based AzureWebJobsStorage, Entra-authenticated telemetry) ----
        // Blob only: the host keeps keys, timer leases and the package in blobs. Queues serve Durable Functions and
        // queue/blob triggers, none of which this app has (as the Flex quickstart templates set it: enableQueue false).
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: identityClientId
        }
        {
          name: 'AzureWebJobsStorage__blobServiceUri'
          value: storage.properties.primaryEndpoints.blob
        }
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: applicationInsights.properties.ConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'ClientId=${identityClientId};Authorization=AAD'
        }
        // ---- lora-router (functions/core/config.ts SETTINGS) ----
        {
          name: 'LORA_ROUTER_MODE'
          value: 'azure'
        }
        // Blob storage, by identity. (LoraStorage__queueServiceUri serves only DISPATCH_TRANSPORT=storage-queue.)
        {
          name: 'LoraStorage__blobServiceUri'
          value: storage.properties.primaryEndpoints.blob
        }
        {
          name: 'LoraStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'LoraStorage__clientId'
          value: identityClientId
        }
        {
          name: 'USER_LORA_CONTAINER'
          value: userLoraContainerName
        }
        {
          name: 'SHARED_LORA_CONTAINER'
          value: sharedLoraContainerName
        }
        // Cosmos DB, by identity.
        {
          name: 'CosmosDb__accountEndpoint'
          value: cosmosEndpoint
        }
        {
          name: 'CosmosDb__credential'
          value: 'managedidentity'
        }
        {
          name: 'CosmosDb__clientId'
          value: identityClientId
        }
        {
          name: 'COSMOS_DATABASE'
          value: cosmosDatabaseName
        }
        // Dispatch over Service Bus sessions, by identity.
        {
          name: 'DISPATCH_TRANSPORT'
          value: 'servicebus'
        }
        {
          name: 'ServiceBus__fullyQualifiedNamespace'
          value: serviceBusFullyQualifiedNamespace
        }
        {
          name: 'ServiceBus__credential'
          value: 'managedidentity'
        }
        {
          name: 'ServiceBus__clientId'
          value: identityClientId
        }
        {
          name: 'SERVICEBUS_QUEUE'
          value: serviceBusQueueName
        }
        // Auth: users and admins with Entra ID tokens, machines with HMAC machine tokens.
        {
          name: 'AUTH_MODE'
          value: 'entra'
        }
        {
          name: 'AUTH_ISSUER'
          value: authIssuer
        }
        {
          name: 'AUTH_AUDIENCE'
          value: authAudience
        }
        {
          name: 'AUTH_JWKS_URI'
          value: authJwksUri
        }
        {
          name: 'AUTH_ADMIN_ROLE'
          value: authAdminRole
        }
        {
          name: 'MACHINE_TOKEN_SECRET'
          value: '@Microsoft.KeyVault(SecretUri=${machineTokenReferenceUri})'
        }
        // Scheduling and limits.
        {
          name: 'SCHEDULER_POLICY'
          value: schedulerPolicy
        }
        {
          name: 'SCHEDULER_SCHEDULE'
          value: schedulerSchedule
        }
        {
          name: 'REAPER_SCHEDULE'
          value: reaperSchedule
        }
        {
          name: 'SCHEDULER_WEIGHTS'
          value: schedulerWeights
        }
        {
          name: 'MACHINE_LIVENESS_SECONDS'
          value: machineLivenessSeconds
        }
        {
          name: 'CLAIM_TIMEOUT_SECONDS'
          value: claimTimeoutSeconds
        }
        {
          name: 'JOB_MAX_ATTEMPTS'
          value: jobMaxAttempts
        }
        {
          name: 'JOB_RETRY_BASE_SECONDS'
          value: jobRetryBaseSeconds
        }
        {
          name: 'TENANT_MAX_ACTIVE_JOBS'
          value: tenantMaxActiveJobs
        }
        {
          name: 'USER_MAX_LORAS'
          value: userMaxLoras
        }
        {
          name: 'USER_MAX_LORA_BYTES'
          value: userMaxLoraBytes
        }
        {
          name: 'UPLOAD_SESSION_MINUTES'
          value: uploadSessionMinutes
        }
        {
          name: 'DOWNLOAD_SAS_MINUTES'
          value: downloadSasMinutes
        }
      ]
    }
  }
}

output name string = app.name
output defaultHostName string = app.properties.defaultHostName
output apiBaseUrl string = 'https://${app.properties.defaultHostName}/api'
