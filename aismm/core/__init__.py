"""The protocol layer: pure rules and documents (no I/O beyond parsing)."""
