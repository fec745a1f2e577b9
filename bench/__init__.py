"""Benchmarks: the automation against the emulator's latency model (see docs/benchmarks.md)."""
