# azd postdeploy hook (azure.yaml), Windows/PowerShell twin of postdeploy.sh: connect the storage account's
# BlobCreated events to the loraBlobCreated function once the code (and so the eventgrid_extension key) exists.
# See postdeploy.sh for the reasoning. Needs the Azure CLI signed in to the same subscription as azd (`az login`).
$ErrorActionPreference = 'Stop'

foreach ($name in 'AZURE_RESOURCE_GROUP', 'AZURE_FUNCTION_APP_NAME', 'LORA_EVENTS_SYSTEM_TOPIC_NAME',
                  'USER_LORA_CONTAINER', 'SHARED_LORA_CONTAINER', 'API_BASE_URL') {
  if (-not [Environment]::GetEnvironmentVariable($name)) {
    throw "postdeploy: $name is not set; run through azd (azd deploy / azd up)"
  }
}
if (-not (Get-Command az -ErrorAction SilentlyContinue)) {
  throw 'postdeploy: the Azure CLI (az) is required; see docs/deploy.md'
}

$rg = $env:AZURE_RESOURCE_GROUP
$app = $env:AZURE_FUNCTION_APP_NAME
if ($env:AZURE_SUBSCRIPTION_ID) {
  az account set --subscription $env:AZURE_SUBSCRIPTION_ID
  if ($LASTEXITCODE -ne 0) { throw 'postdeploy: az account set failed' }
}
$template = Join-Path $PSScriptRoot '..' 'app' 'blob-events.bicep'

Write-Host "postdeploy: waiting for the eventgrid_extension key of $app ..."
$haveKey = $false
for ($attempt = 0; $attempt -lt 30; $attempt++) {
  # Flex Consumption scales to zero; a request starts the host, which creates the key. /api/health is anonymous.
  try { Invoke-WebRequest -Uri "$($env:API_BASE_URL)/health" -TimeoutSec 30 -UseBasicParsing | Out-Null } catch { }
  # Only test for the key; its value is read inside ARM by blob-events.bicep and never printed.
  $key = az functionapp keys list -g $rg -n $app --query 'systemKeys.eventgrid_extension' -o tsv 2>$null
  if ($LASTEXITCODE -eq 0 -and $key) { $haveKey = $true; break }
  Start-Sleep -Seconds 10
}
if (-not $haveKey) {
  throw ("postdeploy: the eventgrid_extension key did not appear within 5 minutes. Check that the app started " +
         "and has an Event Grid trigger, then run 'azd hooks run postdeploy'.")
}

Write-Host "postdeploy: creating/updating the BlobCreated subscriptions on $($env:LORA_EVENTS_SYSTEM_TOPIC_NAME) ..."
az deployment group create `
  --resource-group $rg `
  --name lora-router-blob-events `
  --template-file $template `
  --parameters `
    "functionAppName=$app" `
    "systemTopicName=$($env:LORA_EVENTS_SYSTEM_TOPIC_NAME)" `
    "userLoraContainerName=$($env:USER_LORA_CONTAINER)" `
    "sharedLoraContainerName=$($env:SHARED_LORA_CONTAINER)" `
  --output none
if ($LASTEXITCODE -ne 0) { throw 'postdeploy: the blob-events deployment failed' }

Write-Host "postdeploy: done. Uploads to $($env:USER_LORA_CONTAINER) and $($env:SHARED_LORA_CONTAINER) now reach loraBlobCreated."
