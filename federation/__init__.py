"""Shared core of pv4fad: data, features, transcript ledger, Flower wiring and the CLI."""

import os

# Nothing leaves the machine unasked: Flower's usage telemetry and update check are off (as
# in the deployment image) unless the operator set them. Flower reads these at import, and
# every pv4fad entry point imports this package first.
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
