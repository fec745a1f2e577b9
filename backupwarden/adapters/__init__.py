"""The only code that talks to Azure: `azure/` wraps the SDK clients, `storage/` Table and Queue Storage."""
