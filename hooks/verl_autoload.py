"""Imported by verl through ``VERL_USE_EXTERNAL_MODULES=entropy_watch.hooks.verl_autoload``: installs the hooks.

Importing this module is the action (verl's external-module mechanism only imports): it calls
:func:`entropy_watch.hooks.verl.install` in every verl process that has the variable set — the driver gets the
metrics tee and the per-token wraps, the workers get the ``ew_*`` policy losses. See ``entropy_watch.hooks.verl``.
"""

from __future__ import annotations

from entropy_watch.hooks.verl import install

INSTALLED = install()
