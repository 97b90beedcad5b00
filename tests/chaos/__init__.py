"""Fault tests: real processes and services broken on purpose (docs/reliability.md)."""
