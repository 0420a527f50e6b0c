"""Characters that move or hide text where data is shown: what the CLI escapes and the app draws visibly.

C1 controls (U+0080-U+009F; U+009B is a CSI some terminals act on), DEL, the Arabic letter mark, zero-width
characters, the line and paragraph separators, bidirectional embeddings, overrides and isolates, invisible operators
and the byte-order mark. C0 controls (U+0000-U+001F) are left to each surface: JSON escapes them itself, a terminal
line escapes them, a table cell draws their Control Pictures.
"""

from __future__ import annotations

import re

FORMAT_CHARS = "\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
"""A regex character-class body (ranges) of those characters."""
FORMAT_RE = re.compile(f"[{FORMAT_CHARS}]")
