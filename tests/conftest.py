"""Suite-wide set-up, run before any test module imports a library: the tests are offline.

huggingface_hub reads its offline and telemetry switches once, at import; a TRL or transformers test that imports it
first would otherwise start a telemetry thread that resolves huggingface.co (a getaddrinfo in a background thread
crashed the interpreter with SIGSEGV on a machine without network).

A suite started in the background of a shell without job control (``make test &``, a CI wrapper) inherits SIGINT
ignored, and so would every process it starts: the Ctrl-C tests (``watch``, ``app``) then waited for a signal that
never came. SIGINT is delivered again, as a terminal or a process manager delivers it (children get the default).
"""

from __future__ import annotations

import os
import signal

OFFLINE = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "DO_NOT_TRACK")
for _name in OFFLINE:
    os.environ.setdefault(_name, "1")


if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
