// Key Vault in RBAC mode (no access policies) holding the one secret the app has: the HMAC key that signs machine
// tokens. The app reads it through a Key Vault reference (MACHINE_TOKEN_SECRET in api.bicep) resolved with its
// user-assigned identity, which gets Key Vault Secrets User in rbac.bicep.

param name string
param location string
param tags object
param machineTokenSecretName string

@secure()
@description('The HMAC secret for machine tokens (at least 32 characters).')
param machineTokenSecretValue string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    publicNetworkAccess: 'Enabled'
  }
}

resource machineTokenSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: machineTokenSecretName
  properties: {
    value: machineTokenSecretValue
    contentType: 'HMAC key for lora-router machine tokens'
  }
}

output name string = vault.name
// Versionless URI: the app picks up a rotated value without a redeploy (see docs/deploy.md).
output machineTokenReferenceUri string = machineTokenSecret.properties.secretUri
