"""Where a command writes a file the user names (``export --duckdb PATH``, ``report -o PATH``): it may replace its own
earlier output, never another file (a CSV log given by mistake) or a folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from entropy_watch.errors import EntropyWatchError


def check_replaceable(path: Path, what: str, ours: Callable[[bytes], bool], head_bytes: int) -> None:
    """Raise :class:`EntropyWatchError` (one line) unless ``path`` is free or holds ``what`` as this tool writes it:
    ``ours`` judges the file's first ``head_bytes`` bytes."""
    if path.is_dir():
        raise EntropyWatchError(f"{path} is a directory; pass a file path")
    if not path.exists():
        return
    try:
        with open(path, "rb") as fh:
            head = fh.read(head_bytes)
    except OSError as e:
        raise EntropyWatchError(f"cannot read {path} to check it is {what}: {e.strerror or e}") from None
    if not ours(head):
        raise EntropyWatchError(
            f"{path} exists and is not {what}; refusing to overwrite it (pass another path or remove it)"
        )
