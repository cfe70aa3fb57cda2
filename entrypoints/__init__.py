"""Entry points: the `ledger` command line.  They translate; the work is in `ledger`."""
