// Every permission in the deployment, in one place. Three principals:
//   1. the app's user-assigned identity: exactly what the Functions app needs, nothing more;
//   2. the deployer (azd user, `principalId`): read-back of the machine-token secret, and optional data access
//      for debugging;
//   3. the GPU fleet (`fleetPrincipalId`, optional): receive-only on the jobs queue. Agents talk to the HTTP API with
//      a machine token and download LoRAs with short-lived SAS URLs, so they get no storage or database role.

param storageAccountName string
param serviceBusNamespaceName string
param serviceBusQueueName string
param cosmosAccountName string
param keyVaultName string
param applicationInsightsName string

@description('Principal (object) id of the app\'s user-assigned identity.')
param appPrincipalId string

@description('Object id of the user or service principal running azd. Empty: no deployer roles.')
param deployerPrincipalId string = ''

@description('Also give the deployer blob and Cosmos data access, for debugging. Off for shared/production subscriptions.')
param grantDeployerDataAccess bool = true

@description('Object id of the principal the GPU agents use for Service Bus (e.g. a managed identity on the VMs). Empty: none.')
param fleetPrincipalId string = ''

// Azure built-in role definition ids (same in every tenant).
var roleIds = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDelegator: 'db58b8e5-c6ad-4a2a-8342-4190687cbf4a'
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
  serviceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}
// Cosmos DB data-plane role (not an Azure RBAC role): "Cosmos DB Built-in Data Contributor".
var cosmosDataContributorRoleId = '00000000-0000-0000-0000-000000000002'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource serviceBus 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: serviceBusNamespaceName
}

resource jobsQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' existing = {
  parent: serviceBus
  name: serviceBusQueueName
}

resource cosmos 'Microsoft.DocumentDB/databaseAccounts@2024-05-15' existing = {
  name: cosmosAccountName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// ---- 1. The app identity ----

// Blobs: LoRA files (read/write/delete), the Flex deployment package, and the host's own blobs (timer locks, keys).
resource appBlobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appPrincipalId, roleIds.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageBlobDataOwner)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'lora-router app: LoRA blobs, deployment package, host storage'
  }
}

// User-delegation keys, to sign the upload and download SAS URLs. (Blob Data Owner also carries this action;
// the explicit Delegator assignment keeps the intent visible if the data role is ever narrowed.)
resource appBlobDelegator 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appPrincipalId, roleIds.storageBlobDelegator)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageBlobDelegator)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'lora-router app: user-delegation SAS'
  }
}

// No queue role: in Azure the app dispatches over Service Bus and the host needs blobs only (no queue triggers).

// Dispatch: the scheduler sends to the jobs queue.
resource appServiceBusSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(jobsQueue.id, appPrincipalId, roleIds.serviceBusDataSender)
  scope: jobsQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.serviceBusDataSender)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'lora-router app: send dispatch messages'
  }
}

// Dead letters: GET/POST /api/dead-letters read and settle `jobs/$DeadLetterQueue`, which needs the receiver role on
// the queue (no narrower scope exists for a sub-queue). The app never receives from the main queue.
resource appServiceBusReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(jobsQueue.id, appPrincipalId, roleIds.serviceBusDataReceiver)
  scope: jobsQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.serviceBusDataReceiver)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'lora-router app: read and settle dead-lettered dispatches'
  }
}

// Resolves the MACHINE_TOKEN_SECRET Key Vault reference.
resource appKeyVaultSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, appPrincipalId, roleIds.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.keyVaultSecretsUser)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'lora-router app: machine-token secret'
  }
}

// Telemetry with Entra auth (Application Insights has local auth disabled).
resource appMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, appPrincipalId, roleIds.monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.monitoringMetricsPublisher)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'lora-router app: telemetry'
  }
}

// Cosmos DB data plane: read/write items in every container of the account.
resource appCosmosDataContributor 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-05-15' = {
  parent: cosmos
  name: guid(cosmos.id, appPrincipalId, cosmosDataContributorRoleId)
  properties: {
    roleDefinitionId: '${cosmos.id}/sqlRoleDefinitions/${cosmosDataContributorRoleId}'
    principalId: appPrincipalId
    scope: cosmos.id
  }
}

// ---- 2. The deployer ----

// Lets azd read the machine-token secret back on the next `azd provision` (main.parameters.json uses
// secretOrRandomPassword), so re-provisioning keeps the secret instead of invalidating every machine token.
resource deployerKeyVaultSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(vault.id, deployerPrincipalId, roleIds.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.keyVaultSecretsUser)
    principalId: deployerPrincipalId
    description: 'lora-router deployer: read back the machine-token secret on re-provision'
  }
}

resource deployerBlobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId) && grantDeployerDataAccess) {
  name: guid(storage.id, deployerPrincipalId, roleIds.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageBlobDataOwner)
    principalId: deployerPrincipalId
    description: 'lora-router deployer: debugging access to blobs'
  }
}

// Cosmos DB takes one sqlRoleAssignment write at a time per account ("another operation in progress which requires
// an exclusive lock"): this one waits for the app's.
resource deployerCosmosDataContributor 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-05-15' = if (!empty(deployerPrincipalId) && grantDeployerDataAccess) {
  parent: cosmos
  name: guid(cosmos.id, deployerPrincipalId, cosmosDataContributorRoleId)
  dependsOn: [
    appCosmosDataContributor
  ]
  properties: {
    roleDefinitionId: '${cosmos.id}/sqlRoleDefinitions/${cosmosDataContributorRoleId}'
    principalId: deployerPrincipalId
    scope: cosmos.id
  }
}

// ---- 3. The GPU fleet ----

// Receive-only, on the jobs queue only (not the namespace).
resource fleetServiceBusReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(fleetPrincipalId)) {
  name: guid(jobsQueue.id, fleetPrincipalId, roleIds.serviceBusDataReceiver)
  scope: jobsQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.serviceBusDataReceiver)
    principalId: fleetPrincipalId
    // No principalType: the fleet principal may be a managed identity, a service principal or an Entra group of them.
    description: 'lora-router GPU fleet: receive dispatch messages'
  }
}
