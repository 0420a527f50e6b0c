"""``python -m entropy_watch`` runs the CLI (same as the ``entropy-watch`` command)."""

from entropy_watch.cli import main

if __name__ == "__main__":
    main()
