"""Alerts: tell people when a flow's run fails, succeeds, recovers or is late (docs/operations.md)."""
