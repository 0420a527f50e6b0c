"""Importers: runs logged by other tools (TRL, verl, OpenRLHF/TensorBoard, W&B, generic CSV/JSONL) into the store.

``load_log(path)`` parses a log into :class:`ImportedRun` objects (source and canonical metric names, see
:mod:`entropy_watch.aliases`); ``import_log(store, path)`` also publishes them into a store, atomically.
Torch-free; TensorBoard needs the ``tb`` extra. Formats: :data:`FORMATS`.
"""

from __future__ import annotations

from entropy_watch.importers.base import IMPORTER_VERSION, ImportedRun
from entropy_watch.importers.detect import FORMATS, detect_format
from entropy_watch.importers.loader import load_log
from entropy_watch.importers.store_import import RunExists, import_log

__all__ = ["FORMATS", "IMPORTER_VERSION", "ImportedRun", "RunExists", "detect_format", "import_log", "load_log"]
