"""entropy_watch.trainer (work in progress)."""
