"""The HTTP edge: `ledger serve` (docs/spec.md §15).  Like entrypoints/ it may import anything
below it; nothing below imports it."""
