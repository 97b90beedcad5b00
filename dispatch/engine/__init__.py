"""The dispatch engine: pure decision code (no Django) over snapshots in `types`."""
