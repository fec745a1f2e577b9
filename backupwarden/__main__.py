"""`python -m backupwarden sweep [--dry-run] [--output table|json]` and `python -m backupwarden demo`."""

from __future__ import annotations

import sys

from backupwarden.cli.main import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m backupwarden"))
