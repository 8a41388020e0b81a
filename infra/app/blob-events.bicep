// BlobCreated events of the two LoRA containers -> the loraBlobCreated function (an Event Grid trigger), one
// subscription per container. NOT part of main.bicep: the webhook URL carries the function's `eventgrid_extension`
// system key, and that key only exists after the code is deployed and the host has started. infra/scripts/postdeploy.*
// (an azd postdeploy hook) waits for the key and then deploys this file into the resource group:
//
//   az deployment group create -g <rg> -f infra/app/blob-events.bicep -p functionAppName=... systemTopicName=... \
//     userLoraContainerName=... sharedLoraContainerName=...
//
// The key is read inside ARM (listKeys below), so it never passes through a shell, a parameter or deployment history.
// Re-running is safe: it is a PUT of the same subscriptions (and picks up a rotated key).

param functionAppName string
param systemTopicName string
param userLoraContainerName string
param sharedLoraContainerName string

@description('Name of the Event Grid triggered function (app.eventGrid(...) in functions/triggers).')
param functionName string = 'loraBlobCreated'

resource app 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: systemTopicName
}

// Function host system key for the Event Grid extension (Microsoft.Web/sites/host/default/listKeys).
var eventGridKey = listKeys('${app.id}/host/default', '2024-04-01').systemKeys.eventgrid_extension
var webhookUrl = 'https://${app.properties.defaultHostName}/runtime/webhooks/eventgrid?functionName=${functionName}&code=${eventGridKey}'

var containerNames = [
  userLoraContainerName
  sharedLoraContainerName
]

resource blobCreated 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = [
  for containerName in containerNames: {
    parent: systemTopic
    name: '${containerName}-blob-created'
    properties: {
      destination: {
        endpointType: 'WebHook'
        properties: {
          endpointUrl: webhookUrl
          maxEventsPerBatch: 1
          preferredBatchSizeInKilobytes: 64
        }
      }
      eventDeliverySchema: 'EventGridSchema'
      filter: {
        includedEventTypes: [
          'Microsoft.Storage.BlobCreated'
        ]
        subjectBeginsWith: '/blobServices/default/containers/${containerName}/blobs/'
      }
      // Event Grid's defaults, spelled out: retry for up to a day. An upload whose event is lost for good stays
      // "uploading" until the uploadSweeper timer expires it.
      retryPolicy: {
        maxDeliveryAttempts: 30
        eventTimeToLiveInMinutes: 1440
      }
    }
  }
]
