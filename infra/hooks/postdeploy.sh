#!/bin/sh
# azd postdeploy hook. The Event Grid subscriptions (vm_written) and the action group's webhook
# (alert_webhook and its function key) can only be created once the code is deployed. The first
# `azd up` provisions without them (BACKUPWARDEN_FUNCTIONS_DEPLOYED=false), deploys the code, and
# this hook provisions once more with them; later runs find the flag set and do nothing.
set -eu
if [ "${BACKUPWARDEN_FUNCTIONS_DEPLOYED:-false}" = "true" ]; then
  exit 0
fi
echo "backupwarden: code deployed; provisioning the Event Grid subscriptions and the alert webhook"
azd env set BACKUPWARDEN_FUNCTIONS_DEPLOYED true
azd provision --no-prompt
