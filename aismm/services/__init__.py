"""Services: what the hub does with judged state (events, missions, money)."""
