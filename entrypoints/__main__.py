from entrypoints.cli import entry

if __name__ == "__main__":  # not when a spawned process re-imports the main module (workers.screen)
    entry()
