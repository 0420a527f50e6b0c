"""entropy_watch.analysis (work in progress)."""
