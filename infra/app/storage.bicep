// The one storage account: LoRA blobs (user + shared containers), the Flex Consumption deployment package container,
// and the Functions host's own state (AzureWebJobsStorage: timer locks, keys). Identity only: shared-key access is
// off, so there are no account keys or connection strings to leak. Upload/download URLs are user-delegation SAS,
// signed with the app identity (Storage Blob Delegator).
//
// Also the Event Grid system topic for the account. Its subscriptions (BlobCreated -> the loraBlobCreated function)
// are created after the code is deployed, by infra/scripts/postdeploy.* deploying blob-events.bicep, because the
// webhook needs the function's eventgrid_extension key, which exists only once the host has started.

param name string
param location string
param tags object
param systemTopicName string
param userLoraContainerName string
param sharedLoraContainerName string
param deploymentContainerName string

@description('Job outputs (images...): private, written by GPU agents through write-only SAS, read by owners through read SAS.')
param outputContainerName string = 'job-outputs'

@description('Days job outputs are kept; keep equal to the OUTPUT_RETENTION_DAYS app setting (the record\'s TTL).')
param outputRetentionDays int = 7

@description('Origins allowed to PUT/GET blobs from a browser, comma-separated, or * for any.')
param corsAllowedOrigins string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
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
    // Browsers (uploads) and GPU machines (downloads) reach blobs from anywhere, always with a short-lived SAS.
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    // CORS only matters to browsers: it lets a web page PUT a file to the upload SAS URL it got from
    // POST /api/user-loras. It grants nothing by itself (every request still needs a valid SAS), so '*' is a
    // workable default; set BLOB_CORS_ALLOWED_ORIGINS to your front-end origin(s) once you have one.
    cors: {
      corsRules: [
        {
          allowedOrigins: map(split(corsAllowedOrigins, ','), origin => trim(origin))
          allowedMethods: [
            'PUT'
            'GET'
            'HEAD'
            'OPTIONS'
          ]
          allowedHeaders: [
            '*'
          ]
          exposedHeaders: [
            'etag'
            'content-length'
            'content-range'
            'x-ms-*'
          ]
          maxAgeInSeconds: 3600
        }
      ]
    }
  }
}

var containerNames = [
  userLoraContainerName
  sharedLoraContainerName
  deploymentContainerName
  outputContainerName
]

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for containerName in containerNames: {
    parent: blobService
    name: containerName
    properties: {
      publicAccess: 'None'
    }
  }
]

// Outputs expire: the blobs are deleted this many days after they were written (the job record stops listing them at
// the same age, OUTPUT_RETENTION_DAYS).
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'expire-job-outputs'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${outputContainerName}/outputs/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterCreationGreaterThan: outputRetentionDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: systemTopicName
  location: location
  tags: tags
  properties: {
    source: storage.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

output outputContainerName string = outputContainerName
output name string = storage.name
output id string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output systemTopicName string = systemTopic.name
