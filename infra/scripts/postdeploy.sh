#!/bin/sh
# azd postdeploy hook (azure.yaml): connect the storage account's BlobCreated events to the loraBlobCreated function.
#
# Why after deploy: the Event Grid webhook URL needs the function app's `eventgrid_extension` system key, which the
# Functions host creates when it first starts with an Event Grid trigger, i.e. only once code is deployed. So:
#   1. wake the app and wait until that key exists;
#   2. deploy infra/app/blob-events.bicep, which reads the key inside ARM and PUTs one event subscription per
#      LoRA container (idempotent: safe to run again, e.g. `azd hooks run postdeploy`).
#
# Needs the Azure CLI signed in to the same subscription as azd (`az login`). Reads azd's environment values
# (outputs of infra/main.bicep), which azd exports to hooks.
set -eu

: "${AZURE_RESOURCE_GROUP:?run through azd (azd deploy / azd up) or export the azd env values}"
: "${AZURE_FUNCTION_APP_NAME:?}"
: "${LORA_EVENTS_SYSTEM_TOPIC_NAME:?}"
: "${USER_LORA_CONTAINER:?}"
: "${SHARED_LORA_CONTAINER:?}"
: "${API_BASE_URL:?}"

if ! command -v az >/dev/null 2>&1; then
  echo "postdeploy: the Azure CLI (az) is required; see docs/deploy.md" >&2
  exit 1
fi

if [ -n "${AZURE_SUBSCRIPTION_ID:-}" ]; then
  az account set --subscription "$AZURE_SUBSCRIPTION_ID"
fi

script_dir=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
template="$script_dir/../app/blob-events.bicep"

echo "postdeploy: waiting for the eventgrid_extension key of $AZURE_FUNCTION_APP_NAME ..."
attempt=0
have_key=no
while [ "$attempt" -lt 30 ]; do
  # Flex Consumption scales to zero; a request starts the host, which creates the key. /api/health is anonymous.
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -o /dev/null --max-time 30 "$API_BASE_URL/health" || true
  fi
  # Only test for the key here; its value is read inside ARM by blob-events.bicep and never printed.
  if [ -n "$(az functionapp keys list -g "$AZURE_RESOURCE_GROUP" -n "$AZURE_FUNCTION_APP_NAME" \
      --query 'systemKeys.eventgrid_extension' -o tsv 2>/dev/null || true)" ]; then
    have_key=yes
    break
  fi
  attempt=$((attempt + 1))
  sleep 10
done

if [ "$have_key" != yes ]; then
  echo "postdeploy: the eventgrid_extension key did not appear within 5 minutes." >&2
  echo "  Check that the app started (Application Insights / 'az functionapp function list') and that it has an" >&2
  echo "  Event Grid trigger, then run 'azd hooks run postdeploy'." >&2
  exit 1
fi

echo "postdeploy: creating/updating the BlobCreated subscriptions on $LORA_EVENTS_SYSTEM_TOPIC_NAME ..."
az deployment group create \
  --resource-group "$AZURE_RESOURCE_GROUP" \
  --name lora-router-blob-events \
  --template-file "$template" \
  --parameters \
    functionAppName="$AZURE_FUNCTION_APP_NAME" \
    systemTopicName="$LORA_EVENTS_SYSTEM_TOPIC_NAME" \
    userLoraContainerName="$USER_LORA_CONTAINER" \
    sharedLoraContainerName="$SHARED_LORA_CONTAINER" \
  --output none

echo "postdeploy: done. Uploads to $USER_LORA_CONTAINER and $SHARED_LORA_CONTAINER now reach loraBlobCreated."
