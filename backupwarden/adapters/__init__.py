"""The only code that talks to Azure: thin wrappers over the SDK clients from `backupwarden.clients`."""
