#!/usr/bin/env bash
# Runs after `azd deploy` (and so at the end of `azd up`), once the functions exist:
#  1. subscribes the app's asset_changed function to the asset events topic (CloudEvents 1.0);
#     Event Grid checks the function when the subscription is made, so it cannot be in Bicep;
#  2. applies the enrollment groups kept in the repository: python -m operator_cli enrollment apply;
#  3. runs a smoke registration through DPS: python -m operator_cli smoke.
# azd hands a hook its environment's values (the Bicep outputs); run by hand, the script loads
# them with `azd env get-values`. SKIP_ENROLLMENT_APPLY=true or SKIP_SMOKE=true leaves out 2 or 3.
#
# Steps 2 and 3 get exactly the settings they read (docs/enrollment-and-smoke.md), mapped from the
# outputs below, and sign in as whoever runs azd (az login / azd auth login), never as the app's
# identity. The allocation function's key is fetched here, written to a file only this user can
# read, handed over by that file's name and removed on exit; it is never printed. No `set -x`.
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
# allocation/blueprint.py: route "allocate", auth level FUNCTION; host.json: routePrefix "api".
WEBHOOK_FUNCTION=allocate
DEMO_POLICY=policies/demo.toml
SMOKE_GROUP_ID=smoke-x509
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

run_apply=true run_smoke=true
[[ "${SKIP_ENROLLMENT_APPLY:-false}" == "true" ]] && run_apply=false
[[ "${SKIP_SMOKE:-false}" == "true" ]] && run_smoke=false
if [[ "$run_apply" == false && "$run_smoke" == false ]]; then
  exit 0
fi

# The smoke device belongs to the group smoke-x509; the webhook refuses a group its policy does
# not trust. The demo policy trusts only the devstack's group and names the devstack's hubs.
POLICY_FILE=${POLICY_FILE:-$DEMO_POLICY}
if [[ "$run_smoke" == true ]]; then
  if [[ "$POLICY_FILE" == "$DEMO_POLICY" || "$POLICY_FILE" == "./$DEMO_POLICY" ]]; then
    echo "postdeploy: the app runs the demo policy ($DEMO_POLICY), which trusts only the devstack's" \
      "enrollment group and names the devstack's hubs, so the smoke registration would be refused." \
      "Write your policy (docs/deploy-azure.md, \"Your policy\"), then azd env set POLICY_FILE <it>" \
      "and azd up; or azd env set SKIP_SMOKE true to deploy without the smoke test." >&2
    exit 1
  fi
  if [[ ! -f "$POLICY_FILE" ]] || ! grep -Eq "[\"']$SMOKE_GROUP_ID[\"']" "$POLICY_FILE"; then
    echo "postdeploy: the policy $POLICY_FILE does not list \"$SMOKE_GROUP_ID\" in [trust]" \
      "enrollment_groups, so the smoke registration would be refused; add it (docs/deploy-azure.md," \
      "\"Your policy\") or azd env set SKIP_SMOKE true" >&2
    exit 1
  fi
fi

: "${DPS_SERVICE_HOST:?not set: run azd provision first}"

# Each command runs with the values below and without the ones in unset_env, whatever the shell
# held: DPS over Entra ID (the operator holds DPS Data Contributor); the hubs, storage and the
# asset API under the app's own setting names, but with the operator's sign-in:
# AZURE_TOKEN_CREDENTIALS=dev keeps DefaultAzureCredential to the Azure CLI's, azd's and other
# developer sign-ins, and AZURE_CLIENT_ID (in CI, the deployment identity's) is not passed on, so
# no managed identity is asked for. No __credential on the storage settings for the same reason.
# Secrets never go on a command line: the function key goes by file, the asset API key (when
# there is one) by the environment of the smoke command alone.
common_env=(AZURE_TOKEN_CREDENTIALS=dev "DPS_SERVICE_HOST=$DPS_SERVICE_HOST")
unset_env=(
  AZURE_CLIENT_ID AZURE_CLIENT_SECRET AZURE_CLIENT_CERTIFICATE_PATH AZURE_FEDERATED_TOKEN_FILE
  DPS_CONNECTION_STRING DPS_CA_BUNDLE ALLOCATION_FUNCTION_KEY
  IOT_HUB_CONNECTION_STRINGS IOT_HUB_ENDPOINTS IOT_HUB_CA_BUNDLE
  AzureWebJobsStorage AzureWebJobsStorage__credential AzureWebJobsStorage__clientId
  AzureWebJobsStorage__accountName STORAGE_CA_BUNDLE
)

# run_command <operator_cli arguments...>, with extra_env set and extra_unset unset as well.
run_command() {
  local unset_args=() name
  for name in "${unset_env[@]}" "${extra_unset[@]}"; do unset_args+=(-u "$name"); done
  env "${unset_args[@]}" "${common_env[@]}" "${extra_env[@]}" "$PYTHON" -m operator_cli "$@"
}

if [[ "$run_apply" == true ]]; then
  : "${FUNCTION_APP_HOST:?not set: run azd provision first}"
  key_dir=$(mktemp -d)
  trap 'rm -rf "$key_dir"' EXIT
  key_file="$key_dir/allocate.key"
  (
    umask 077
    # The allocation function's default key, straight into the file: never on a terminal.
    az functionapp function keys list --resource-group "$AZURE_RESOURCE_GROUP" \
      --name "$FUNCTION_APP_NAME" --function-name "$WEBHOOK_FUNCTION" \
      --query default --output tsv > "$key_file"
  )
  if [[ ! -s "$key_file" ]]; then
    echo "postdeploy: no default key for function $WEBHOOK_FUNCTION on $FUNCTION_APP_NAME" >&2
    exit 1
  fi
  extra_env=(
    "ALLOCATION_WEBHOOK_URL=https://$FUNCTION_APP_HOST/api/$WEBHOOK_FUNCTION"
    "ALLOCATION_FUNCTION_KEY_FILE=$key_file"
  )
  extra_unset=(ASSET_API_KEY)
  echo "postdeploy: applying the enrollment groups"
  run_command enrollment apply
fi

if [[ "$run_smoke" == true ]]; then
  : "${DPS_ID_SCOPE:?not set: run azd provision first}"
  : "${IOT_HUB_HOST_NAMES:?not set: run azd provision first}"
  : "${ASSET_API_URL:?not set: azd env set ASSET_API_URL, then azd provision}"
  extra_unset=(ALLOCATION_WEBHOOK_URL ALLOCATION_FUNCTION_KEY_FILE)
  extra_env=(
    "DPS_ID_SCOPE=$DPS_ID_SCOPE"
    "DPS_DEVICE_ENDPOINT=${DPS_DEVICE_HOST:-global.azure-devices-provisioning.net}"
    "IOT_HUB_MANAGED_IDENTITY_HUBS=$IOT_HUB_HOST_NAMES"
    "AzureWebJobsStorage__queueServiceUri=${AzureWebJobsStorage__queueServiceUri:?not set: run azd provision first}"
    "AzureWebJobsStorage__tableServiceUri=${AzureWebJobsStorage__tableServiceUri:?not set: run azd provision first}"
    "AzureWebJobsStorage__blobServiceUri=${AzureWebJobsStorage__blobServiceUri:?not set: run azd provision first}"
    "AUDIT_TABLE=${AUDIT_TABLE:-audit}"
    "ASSET_API_URL=$ASSET_API_URL"
  )
  if [[ -n "${ASSET_API_AUDIENCE:-}" ]]; then
    # The operator's own token for the API: its owners must let the operator in.
    extra_env+=("ASSET_API_AUDIENCE=$ASSET_API_AUDIENCE")
    extra_unset+=(ASSET_API_KEY)
  else
    extra_unset+=(ASSET_API_AUDIENCE)
    if [[ -z "${ASSET_API_KEY:-}" ]]; then
      # The key the app reads from Key Vault (the operator holds Key Vault Secrets User there).
      : "${KEY_VAULT_NAME:?not set: run azd provision first}"
      if ! ASSET_API_KEY=$(az keyvault secret show --vault-name "$KEY_VAULT_NAME" \
          --name "${ASSET_API_KEY_SECRET_NAME:-asset-api-key}" --query value --output tsv) \
          || [[ -z "$ASSET_API_KEY" ]]; then
        echo "postdeploy: cannot read the asset API key from Key Vault $KEY_VAULT_NAME (set the" \
          "secret first: docs/deploy-azure.md, \"Pointing it at your asset system\")" >&2
        exit 1
      fi
    fi
    export ASSET_API_KEY
  fi
  echo "postdeploy: smoke registration"
  run_command smoke
fi
