// lora-router: the whole Azure deployment, for `azd up` (see docs/deploy.md).
//
//   resource group
//   ├─ user-assigned identity ........ the app runs as this; every permission is in app/rbac.bicep
//   ├─ Function app (Flex Consumption, Node 22) ... app/api.bicep, with every app setting the code reads
//   ├─ Storage account ............... LoRA blobs, deployment package, host state; Event Grid system topic
//   ├─ Cosmos DB NoSQL (serverless) .. loras, jobs, machines, events
//   ├─ Service Bus (Standard) ........ `jobs` queue with sessions (session id = machine id)
//   ├─ Key Vault (RBAC) .............. machine-token HMAC secret, read by the app via a Key Vault reference
//   └─ Log Analytics + Application Insights
//
// Identity only: storage shared keys, Cosmos keys and Service Bus SAS keys are all disabled. No app setting holds a
// key or a connection string (test/infra-settings.test.ts checks this).
//
// The Event Grid subscriptions (BlobCreated -> loraBlobCreated) are not here: they need the function's system key,
// which exists only after code deployment. azd's postdeploy hook creates them (infra/scripts/postdeploy.*).

targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; names the resource group and seeds the unique resource names.')
param environmentName string

@minLength(1)
@description('Region for every resource. It must offer Flex Consumption (az functionapp list-flexconsumption-locations).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Resource group name. Default: rg-<environmentName>.')
param resourceGroupName string = ''

@description('Object id of the user or service principal running azd (azd sets AZURE_PRINCIPAL_ID). Empty: no deployer roles.')
param principalId string = ''

@description('Give the deployer blob and Cosmos data access for debugging (the Key Vault read-back role is always given).')
param grantDeployerDataAccess bool = true

@description('Object id of the principal GPU agents use to receive from Service Bus (VM managed identity, service principal or group). Empty: none.')
param fleetPrincipalId string = ''

// ---- Entra ID ----

@description('Entra tenant that issues user/admin tokens. Default: the tenant of this subscription.')
param authTenantId string = tenant().tenantId

@minLength(1)
@description('Audience of access tokens for the API: the API app registration\'s client id (v2 tokens). See docs/deploy.md.')
param authAudience string

@description('App role value that makes a caller an admin.')
param authAdminRole string = 'LoraRouter.Admin'

// ---- Machine-token secret ----

@secure()
@description('HMAC secret for machine tokens. azd passes the value already in Key Vault (secretOrRandomPassword), so re-provisioning keeps it; shorter than 32 characters and it is extended with machineTokenSecretSeed.')
param machineTokenSecret string = ''

@secure()
@description('Random material for a new machine-token secret. Leave the default (newGuid only works as a parameter default).')
param machineTokenSecretSeed string = '${newGuid()}${newGuid()}'

// ---- Storage ----

@description('Origins allowed to upload/download blobs from a browser, comma-separated, or *.')
param blobCorsAllowedOrigins string = '*'

// ---- Scheduling and limits (app settings; the defaults are the app's own, see functions/core/config.ts) ----

param schedulerPolicy string = 'affinity'
@description('NCRONTAB, six fields. Every 2 s keeps an instance busy around the clock: see "Cost at idle" in docs/deploy.md.')
param schedulerSchedule string = '*/2 * * * * *'
param reaperSchedule string = '*/2 * * * * *'
@description('JSON object of scorer weights, e.g. {"affinity":1,"load":0.5}. Empty: built-in weights.')
param schedulerWeights string = ''
param machineLivenessSeconds string = '10'
param claimTimeoutSeconds string = '30'
param jobMaxAttempts string = '3'
param jobRetryBaseSeconds string = '2'
param tenantMaxActiveJobs string = '100'
param userMaxLoras string = '10'
@description('Per-user LoRA storage limit in bytes (10 GiB).')
param userMaxLoraBytes string = '10737418240'
param uploadSessionMinutes string = '60'
param downloadSasMinutes string = '30'

// ---- Flex Consumption scale ----

@description('Instance memory in MB (2048 or 4096; 512 where offered). Billing is per GB-second, so this scales cost.')
@allowed([
  '512'
  '2048'
  '4096'
])
param functionInstanceMemoryMB string = '2048'
@description('Upper bound on instances (cost guard). Flex Consumption accepts 40 to 1000.')
param functionMaximumInstanceCount string = '40'

var abbrs = loadJsonContent('./abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}

var functionAppName = '${abbrs.webSitesFunctions}api-${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'
var userLoraContainerName = 'user-loras'
var sharedLoraContainerName = 'shared-loras'
var cosmosDatabaseName = 'lora-router'
var serviceBusQueueName = 'jobs'
var machineTokenSecretName = 'machine-token-secret'

// Entra v2.0 endpoints (environment() keeps this right in sovereign clouds; public cloud: login.microsoftonline.com).
var authIssuer = '${environment().authentication.loginEndpoint}${authTenantId}/v2.0'
var authJwksUri = '${environment().authentication.loginEndpoint}${authTenantId}/discovery/v2.0/keys'

// First provision: azd hands a fresh 15-character password, extended here to >= 32 characters. Later provisions:
// azd hands back the value stored in Key Vault, which is used as it is.
var machineTokenSecretValue = length(machineTokenSecret) >= 32 ? machineTokenSecret : '${machineTokenSecret}${replace(machineTokenSecretSeed, '-', '')}'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}api-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    systemTopicName: '${abbrs.eventGridEventSystemTopics}${resourceToken}'
    userLoraContainerName: userLoraContainerName
    sharedLoraContainerName: sharedLoraContainerName
    deploymentContainerName: deploymentContainerName
    corsAllowedOrigins: blobCorsAllowedOrigins
  }
}

module cosmos 'app/cosmos.bicep' = {
  name: 'cosmos'
  scope: rg
  params: {
    name: '${abbrs.documentDBDatabaseAccounts}${resourceToken}'
    location: location
    tags: tags
    databaseName: cosmosDatabaseName
  }
}

module serviceBus 'app/servicebus.bicep' = {
  name: 'servicebus'
  scope: rg
  params: {
    name: '${abbrs.serviceBusNamespaces}${resourceToken}'
    location: location
    tags: tags
    queueName: serviceBusQueueName
  }
}

module keyVault 'app/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: '${abbrs.keyVaultVaults}${resourceToken}'
    location: location
    tags: tags
    machineTokenSecretName: machineTokenSecretName
    machineTokenSecretValue: machineTokenSecretValue
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    serviceBusNamespaceName: serviceBus.outputs.name
    serviceBusQueueName: serviceBus.outputs.queueName
    cosmosAccountName: cosmos.outputs.name
    keyVaultName: keyVault.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    appPrincipalId: identity.outputs.principalId
    deployerPrincipalId: principalId
    grantDeployerDataAccess: grantDeployerDataAccess
    fleetPrincipalId: fleetPrincipalId
  }
}

module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  // Roles first: the host needs its storage roles to start and the Key Vault role to resolve MACHINE_TOKEN_SECRET.
  dependsOn: [
    rbac
  ]
  params: {
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    cosmosEndpoint: cosmos.outputs.endpoint
    serviceBusFullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
    machineTokenReferenceUri: keyVault.outputs.machineTokenReferenceUri
    userLoraContainerName: userLoraContainerName
    sharedLoraContainerName: sharedLoraContainerName
    cosmosDatabaseName: cosmos.outputs.databaseName
    serviceBusQueueName: serviceBus.outputs.queueName
    authIssuer: authIssuer
    authAudience: authAudience
    authJwksUri: authJwksUri
    authAdminRole: authAdminRole
    schedulerPolicy: schedulerPolicy
    schedulerSchedule: schedulerSchedule
    reaperSchedule: reaperSchedule
    schedulerWeights: schedulerWeights
    machineLivenessSeconds: machineLivenessSeconds
    claimTimeoutSeconds: claimTimeoutSeconds
    jobMaxAttempts: jobMaxAttempts
    jobRetryBaseSeconds: jobRetryBaseSeconds
    tenantMaxActiveJobs: tenantMaxActiveJobs
    userMaxLoras: userMaxLoras
    userMaxLoraBytes: userMaxLoraBytes
    uploadSessionMinutes: uploadSessionMinutes
    downloadSasMinutes: downloadSasMinutes
    instanceMemoryMB: int(functionInstanceMemoryMB)
    maximumInstanceCount: int(functionMaximumInstanceCount)
  }
}

// ---- Outputs: azd stores these in .azure/<env>/.env; the hook, the CLI and the agent runbook use them ----

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name

// The API
output AZURE_FUNCTION_APP_NAME string = api.outputs.name
output API_BASE_URL string = api.outputs.apiBaseUrl
output AZURE_APP_IDENTITY_CLIENT_ID string = identity.outputs.clientId

// Entra settings clients need to get a token for the API
output AUTH_TENANT_ID string = authTenantId
output AUTH_ISSUER string = authIssuer
output AUTH_AUDIENCE string = authAudience

// Dispatch: what a GPU agent needs besides its machine token
output SERVICEBUS_FULLY_QUALIFIED_NAMESPACE string = serviceBus.outputs.fullyQualifiedNamespace
output SERVICEBUS_QUEUE string = serviceBus.outputs.queueName

// Data
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_STORAGE_BLOB_ENDPOINT string = storage.outputs.blobEndpoint
output USER_LORA_CONTAINER string = userLoraContainerName
output SHARED_LORA_CONTAINER string = sharedLoraContainerName
output COSMOS_ENDPOINT string = cosmos.outputs.endpoint
output COSMOS_DATABASE string = cosmos.outputs.databaseName

// Used by main.parameters.json (secretOrRandomPassword) and by the postdeploy hook
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output LORA_EVENTS_SYSTEM_TOPIC_NAME string = storage.outputs.systemTopicName
