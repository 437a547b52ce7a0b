"""Read models: what the registry and a mission's main say."""
