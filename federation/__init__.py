"""Shared core of pv4fad: data, features, transcript ledger, Flower wiring and the CLI."""
