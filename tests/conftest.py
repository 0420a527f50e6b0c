"""Suite-wide set-up, run before any test module imports a library: the tests are offline.

huggingface_hub reads its offline and telemetry switches once, at import; a TRL or transformers test that imports it
first would otherwise start a telemetry thread that resolves huggingface.co (a getaddrinfo in a background thread
crashed the interpreter with SIGSEGV on a machine without network).
"""

from __future__ import annotations

import os

OFFLINE = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "DO_NOT_TRACK")
for _name in OFFLINE:
    os.environ.setdefault(_name, "1")
