"""entropy_watch.importers (work in progress)."""
