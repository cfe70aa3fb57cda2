"""Adapters to the world outside the domain: store URLs and their errors, retrying transient store failures, settings."""
