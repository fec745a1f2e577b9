"""A local stand-in for the Azure APIs backupwarden calls, served over HTTPS to the real SDK clients."""

from emulator.core.app import Emulator
from emulator.core.server import EmulatorServer

__all__ = ["Emulator", "EmulatorServer"]
