"""The read side: views of accounts and the platform, and the plain-data rendering of machine output."""
