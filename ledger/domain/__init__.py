"""The domain: accounts, the platform, their rules and events.  Pure: no I/O, no clock (time comes in as ``at``), no settings."""
