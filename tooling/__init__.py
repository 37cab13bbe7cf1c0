"""Operator tooling: the offline plan (`python -m tooling.plan`), golden snapshots and generated docs."""
