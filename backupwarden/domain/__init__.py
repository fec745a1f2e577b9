"""Decisions over plain data: no Azure imports, no I/O. Every decision carries its reason."""
