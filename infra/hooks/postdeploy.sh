#!/usr/bin/env bash
# Runs after `azd deploy` (and so at the end of `azd up`), once the functions exist:
#  1. subscribes the app's asset_changed function to the asset events topic (CloudEvents 1.0);
#     Event Grid checks the function when the subscription is made, so it cannot be in Bicep;
#  2. applies the enrollment groups kept in the repository: python -m operator_cli enrollment apply;
#  3. runs a smoke registration through DPS: python -m operator_cli smoke.
# azd hands a hook its environment's values (the Bicep outputs); run by hand, the script loads
# them with `azd env get-values`. SKIP_ENROLLMENT_APPLY=true or SKIP_SMOKE=true leaves out 2 or 3.
set -euo pipefail

if [[ -z "${FUNCTION_APP_ID:-}" ]]; then
  set -a
  # shellcheck disable=SC1090  # the values azd keeps for this environment
  source <(azd env get-values)
  set +a
fi

: "${AZURE_RESOURCE_GROUP:?not set: run azd provision first}"
: "${FUNCTION_APP_NAME:?not set: run azd provision first}"
: "${FUNCTION_APP_ID:?not set: run azd provision first}"
: "${EVENT_GRID_TOPIC_ID:?not set: run azd provision first}"

FUNCTION_NAME=asset_changed
SUBSCRIPTION_NAME=asset-changed
PYTHON=${PYTHON:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3 )}
ATTEMPTS=${FUNCTION_WAIT_ATTEMPTS:-30}
WAIT_SECONDS=${FUNCTION_WAIT_SECONDS:-10}

# A fresh deployment indexes its functions a little after azd returns.
for attempt in $(seq 1 "$ATTEMPTS"); do
  if az functionapp function show --resource-group "$AZURE_RESOURCE_GROUP" \
      --name "$FUNCTION_APP_NAME" --function-name "$FUNCTION_NAME" --output none 2>/dev/null; then
    break
  fi
  if [[ "$attempt" == "$ATTEMPTS" ]]; then
    echo "postdeploy: function $FUNCTION_NAME not found on $FUNCTION_APP_NAME; see its logs in Application Insights" >&2
    exit 1
  fi
  sleep "$WAIT_SECONDS"
done

echo "postdeploy: subscribing $FUNCTION_NAME to the asset events topic"
az eventgrid event-subscription create \
  --name "$SUBSCRIPTION_NAME" \
  --source-resource-id "$EVENT_GRID_TOPIC_ID" \
  --endpoint-type azurefunction \
  --endpoint "$FUNCTION_APP_ID/functions/$FUNCTION_NAME" \
  --event-delivery-schema cloudeventschemav1_0 \
  --output none

if [[ "${SKIP_ENROLLMENT_APPLY:-false}" != "true" ]]; then
  echo "postdeploy: applying the enrollment groups"
  "$PYTHON" -m operator_cli enrollment apply
fi

if [[ "${SKIP_SMOKE:-false}" != "true" ]]; then
  echo "postdeploy: smoke registration"
  "$PYTHON" -m operator_cli smoke
fi
