"""Imported by verl through ``VERL_USE_EXTERNAL_MODULES=entropy_watch.hooks.verl_autoload``: installs the hooks.

Importing this module is the action (verl's external-module mechanism only imports): it calls
:func:`entropy_watch.hooks.verl.install` in every verl process that has the variable set — the driver gets the
metrics tee and the per-token wraps, the workers get the ``ew_*`` policy losses. See ``entropy_watch.hooks.verl``.
verl 0.4-0.5 read no ``VERL_USE_EXTERNAL_MODULES``: there Ray's ``worker_process_setup_hook`` names :func:`setup`.

verl imports this module inside ``import verl``, so an entropy_watch that cannot be imported in the process (numpy 1.x
beside a pyarrow that needs numpy 2, a missing package) would stop verl itself from importing, in every process: here
it is one warning saying nothing is recorded, and verl trains (``ENTROPY_WATCH_STRICT=1`` raises it).
"""

from __future__ import annotations

import logging
import os

try:
    from entropy_watch.hooks.verl import install
except Exception as exc:  # noqa: BLE001 - hooks never crash training, nor verl's own import
    if os.environ.get("ENTROPY_WATCH_STRICT", "") == "1":
        raise
    INSTALLED = {"import": f"{type(exc).__name__}: {exc}"}
    logging.getLogger("entropy_watch").warning(
        "entropy_watch: not installed in this verl process, nothing is recorded (%s); verl trains without it",
        INSTALLED["import"],
    )
else:
    INSTALLED = install()


def setup() -> dict[str, str]:
    """Ray's ``worker_process_setup_hook`` (``"entropy_watch.hooks.verl_autoload.setup"``, verl 0.4-0.5): the install
    ran when Ray imported this module; returns what it installed."""
    return INSTALLED
