from entrypoints.cli import entry

entry()
