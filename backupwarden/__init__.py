"""backupwarden: makes sure Azure VMs get their first backup, unattended and safely."""
