"""Adapters: git, SQLite (outbox, ledger), the sandbox and the hub's layout."""
