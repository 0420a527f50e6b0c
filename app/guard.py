"""One line on the page, never a traceback, when the store cannot answer a live panel.

A panel reads the store on every refresh while others change it: a run's folder deleted or moved while its page is
open, a file removed between listing and reading, a disk that refuses a read. The store raises its domain errors
then; :func:`panel` turns them into one warning in that panel (the full traceback goes to the server's log) and the
rest of the page keeps refreshing. A bug in the app itself (a ``TypeError``) is not caught: tests must see it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

from entropy_watch.app.display import md
from entropy_watch.errors import RunNotFound, first_line
from entropy_watch.store.query import READ_ERRORS

log = logging.getLogger("entropy_watch")
F = TypeVar("F", bound=Callable[..., Any])
STORE_ERRORS: tuple[type[BaseException], ...] = tuple(
    e for e in READ_ERRORS if e not in (ValueError, TypeError, KeyError, IndexError)
)
"""What the store raises on what it holds or on the disk (its domain errors, OSError, DuckDB's and Arrow's errors):
shown as one line. The built-in errors a bug raises propagate."""


def gone(run: str, root: str) -> None:
    """The run's folder left the store while its page was open (deleted, moved, renamed): one line saying so, in
    place of a verdict the CLI can no longer give (``entropy-watch show`` says the run does not exist)."""
    st.warning(
        f"The run {md(run)} is no longer in the store {md(root)}: its folder was deleted or moved. Nothing of it is "
        "shown any more; pick another run above, or open All runs."
    )


def panel(root: str, run: str | None = None) -> Callable[[F], F]:
    """Decorate a page's panel (under ``@st.fragment``): a store error inside it becomes one warning there."""

    def wrap(draw: F) -> F:
        @functools.wraps(draw)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return draw(*args, **kwargs)
            except STORE_ERRORS as exc:
                log.warning("entropy_watch app: a panel could not read the store", exc_info=True)
                if run is not None and isinstance(exc, RunNotFound):
                    gone(run, root)
                else:
                    st.warning(
                        f"Reading the store {md(root)} failed here: {md(first_line(exc))}. The rest of the page is "
                        "unaffected; this part tries again on the next refresh."
                    )
                return None

        return guarded  # type: ignore[return-value]

    return wrap
