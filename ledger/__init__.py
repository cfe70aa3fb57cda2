"""An event-sourced ledger for Unified Trading Accounts.

Domain and service layer.  It knows nothing of the command line or the clock: time comes in
as ``at``; storage is eventsourcing's, chosen by settings.
"""
