// The one user-assigned identity the Functions app runs as. User-assigned (not system-assigned) so that its role
// assignments exist before the app does and survive a re-created app. rbac.bicep grants it everything it needs.

param name string
param location string
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
