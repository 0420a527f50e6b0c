"""Compressed logs (``.gz``, ``.bz2``, ``.xz``): an archived run's CSV, JSONL, verl console log or trainer state —
and logs in UTF-16 with a byte-order mark (a spreadsheet's "Unicode text" export, plain or compressed), read through
the same copy.

Recognised by their magic bytes, whatever the file is named, and decompressed into a private temporary folder that
is removed afterwards; the importer then reads the copy as it would the plain file, and every path it reports (in
errors, notes and ``run.json``) is the compressed file's. The copy is named like the original without its
compression suffix, inside a folder named like the original's, so the default run name is the same as for the
uncompressed log. A stream that ends early (the archiver was killed) is read up to its last complete line, with a
note: the rows before the damage are kept.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
import lzma
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from entropy_watch.errors import ImportFormatError, first_line


class _Utf16(io.RawIOBase):
    """UTF-16 bytes (with their byte-order mark) read as UTF-8, ``read1`` included, for :func:`decompressed`: a file,
    or the stream of a compressed one (a spreadsheet's "Unicode text" export, gzipped)."""

    def __init__(self, src: IO[bytes]) -> None:
        self._src = src  # closed with this reader
        self._dec = codecs.getincrementaldecoder("utf-16")(errors="strict")

    def read1(self, size: int = -1) -> bytes:
        raw = self._src.read1(size if size > 0 else _CHUNK)  # read1: a damaged tail loses only itself
        text = self._dec.decode(raw, final=not raw)
        return text.encode("utf-8") if text or not raw else self.read1(size)

    def close(self) -> None:
        self._src.close()
        super().close()


_KINDS: tuple[tuple[bytes, str, Callable[[Path], IO[bytes]]], ...] = (
    (b"\x1f\x8b", "gzip", lambda p: gzip.open(p, "rb")),
    (b"BZh", "bzip2", lambda p: bz2.open(p, "rb")),
    (b"\xfd7zXZ\x00", "xz", lambda p: lzma.open(p, "rb")),
    (codecs.BOM_UTF16_LE, "UTF-16", lambda p: _Utf16(open(p, "rb"))),  # noqa: SIM115 - closed with the reader
    (codecs.BOM_UTF16_BE, "UTF-16", lambda p: _Utf16(open(p, "rb"))),  # noqa: SIM115
)
_SUFFIXES = (".gz", ".gzip", ".bz2", ".xz")
_CHUNK = 1 << 20
_DAMAGED = (EOFError, OSError, zlib.error, lzma.LZMAError, UnicodeDecodeError)
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def _opened(path: Path, name: str) -> IO[bytes]:
    """The decompressed byte stream of ``path``; UTF-16 text inside a compressed file (with its byte-order mark) is
    read as UTF-8 too, as it is in a plain file (it was refused as "binary content")."""
    src = next(o for _, n, o in _KINDS if n == name)(path)
    if name == "UTF-16":
        return src
    try:
        head = src.peek(2)[:2]  # type: ignore[attr-defined]  # GzipFile, BZ2File and LZMAFile all peek
    except _DAMAGED:
        return src  # a damaged first block: the copy loop below says so
    return _Utf16(src) if head in _UTF16_BOMS else src  # type: ignore[return-value]


def kind(path: Path) -> str | None:
    """``"gzip"``, ``"bzip2"``, ``"xz"`` or ``"UTF-16"`` when ``path`` is a regular file compressed (or encoded)
    so; None otherwise."""
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as fh:
            head = fh.read(6)
    except OSError:
        return None
    return next((name for magic, name, _ in _KINDS if head.startswith(magic)), None)


def inner_name(path: Path) -> str:
    """``metrics.csv.gz`` -> ``metrics.csv``; a name without a compression suffix stays."""
    name = path.name
    low = name.lower()
    return next((name[: -len(s)] for s in _SUFFIXES if low.endswith(s) and len(name) > len(s)), name)


@contextmanager
def decompressed(path: Path) -> Iterator[tuple[Path, list[str]]]:
    """``(plain copy, notes)`` of the compressed file ``path``, for the time of the ``with`` block."""
    name = kind(path) or ""
    with tempfile.TemporaryDirectory(prefix="entropy-watch-import-") as tmp:
        folder = Path(tmp) / (path.resolve().parent.name or "log")
        folder.mkdir()
        inner = folder / inner_name(path)
        notes: list[str] = []
        written = whole = 0  # bytes written; bytes up to the last newline written
        with open(inner, "wb") as dst, _opened(path, name) as src:
            while True:
                try:
                    block = src.read1(_CHUNK)  # read1: a damaged tail loses only itself, not a whole buffer
                except _DAMAGED as e:
                    dst.truncate(whole)  # a half-written row is no row
                    notes.append(
                        f"the {name} stream of {path} ends early ({first_line(e)}): read the {whole:,} bytes of "
                        "complete lines before it"
                    )
                    break
                if not block:
                    break
                try:
                    if (written + len(block)) // _CHECK_EVERY > written // _CHECK_EVERY:
                        _keep_room(path, tmp, written + len(block))
                    dst.write(block)
                except OSError as e:  # a full disk is not a damaged log: say where the room is missing
                    raise ImportFormatError(
                        f"{path}: cannot decompress it into {tmp} ({e.strerror or e}); free some space there or set "
                        "TMPDIR to a folder with room for the uncompressed log"
                    ) from None
                cut = block.rfind(b"\n")
                written += len(block)
                whole = written - len(block) + cut + 1 if cut >= 0 else whole
        if inner.stat().st_size == 0:
            raise ImportFormatError(f"{path}: the {name} stream holds no complete line; nothing to read")
        yield inner, notes


_CHECK_EVERY = 64 << 20
_RESERVE_BYTES, _RESERVE_SHARE = 1 << 30, 0.05


def _keep_room(path: Path, tmp: str, written: int) -> None:
    """Refuse to go on when the decompressed copy (``written`` bytes so far) leaves less than 1 GiB or 5% of its disk
    free: a decompression bomb (a 100 MB ``.gz`` of zeros is 100 GB) filled the disk before failing, and with it the
    writes of whatever else shares that disk (a training run's checkpoints, this store's own writers)."""
    usage = shutil.disk_usage(tmp)
    if usage.free < max(_RESERVE_BYTES, _RESERVE_SHARE * usage.total):
        raise ImportFormatError(
            f"{path}: decompressing it would fill the disk of {tmp} (stopped at {written:,} bytes, "
            f"{usage.free:,} left); set TMPDIR to a folder with room for the uncompressed log"
        )


def restore_paths(text: str, inner: Path, path: Path) -> str:
    """``text`` with the temporary copy's path (and its folder's) replaced by the compressed file's."""
    return text.replace(str(inner.resolve()), str(path)).replace(str(inner), str(path))
