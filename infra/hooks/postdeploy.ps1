# azd postdeploy hook (Windows); see postdeploy.sh beside it for why.
$ErrorActionPreference = 'Stop'
if ($env:BACKUPWARDEN_FUNCTIONS_DEPLOYED -eq 'true') {
  exit 0
}
Write-Host 'backupwarden: code deployed; provisioning the Event Grid subscriptions and the alert webhook'
azd env set BACKUPWARDEN_FUNCTIONS_DEPLOYED true
if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
azd provision --no-prompt
exit $LASTEXITCODE
