"""Where a store lives: a local folder or an S3-compatible bucket (``s3://bucket/prefix``), behind one small seam.

Every file operation of the store goes through the functions here. They take either a :class:`pathlib.Path` (a local
folder: plain ``os`` calls, unchanged and as fast as before) or an :class:`ObjectPath` (a key in a bucket, reached
through ``pyarrow.fs.S3FileSystem``, which ships in the pyarrow wheel: no extra package, no DuckDB extension). What
differs between the two, and why the store stays correct on both:

* **Publishing.** A local file is written to a hidden temporary and renamed into place
  (:mod:`~entropy_watch.store.atomic`). An object is one PUT of the complete bytes: S3 makes an object visible only
  when its PUT completes, so readers see all of it or nothing, and a writer killed mid-upload leaves nothing visible
  (the parts of an unfinished multipart upload are invisible; a bucket lifecycle rule
  ``AbortIncompleteMultipartUpload`` reclaims them). Nothing is ever renamed on an object store.
* **No locks.** Ranks merge ``run.json`` under a file lock locally; on an object store each rank writes its own
  ``_meta/rank=<r>.json`` and readers merge them (:mod:`~entropy_watch.store.meta`). Heartbeats are per rank already.
  Compaction cannot exclude readers while it deletes, so it deletes merged inputs only once their covering part is
  older than a grace period (:mod:`~entropy_watch.store.compact`); coverage metadata keeps every moment in between
  exact.
* **Listing.** One LIST per prefix (1,000 keys a request); modification times come with the listing and ride on the
  returned :class:`ObjectPath` (like ``os.DirEntry`` caching its ``stat``), so ages cost no extra request.
* **Reading.** DuckDB reads local files with ``read_parquet``; objects are handed to it as pyarrow datasets over the
  same filesystem (:func:`~entropy_watch.store.query.source_sql`). DuckDB's own S3 support (the ``httpfs`` extension)
  is downloaded at run time, which machines without internet access cannot do.

Configuration is the usual AWS chain, resolved when a root is opened: credentials from ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, ``~/.aws`` profiles (``AWS_PROFILE``) or instance metadata; the
region from ``AWS_REGION`` / ``AWS_DEFAULT_REGION``; an S3-compatible service (MinIO, Ceph, R2, moto) from
``--endpoint-url`` or ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from entropy_watch.errors import EntropyWatchError, MissingExtra, require

SCHEMES: tuple[str, ...] = ("s3",)
ENV_ENDPOINTS: tuple[str, ...] = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


class ObjectPath:
    """A path in a bucket: ``key`` is ``"bucket/prefix/..."``, ``str()`` is ``"s3://bucket/prefix/..."``.

    Supports what the store does with paths (``/``, ``name``, ``parent``, ``with_name``, ordering, hashing) and is
    deliberately not ``os.PathLike``: code that would hand it to ``open`` or ``os`` fails loudly instead of writing a
    local folder called ``s3:``. ``mtime`` (Unix seconds) is filled in by listings and is not part of equality.
    """

    __slots__ = ("fs", "key", "mtime")

    def __init__(self, fs: pafs.FileSystem, key: str, mtime: float | None = None) -> None:
        self.fs = fs
        self.key = "/".join(p for p in key.split("/") if p)
        self.mtime = mtime

    def __truediv__(self, part: str | os.PathLike[str]) -> ObjectPath:
        return ObjectPath(self.fs, f"{self.key}/{os.fspath(part)}")

    def joinpath(self, *parts: str) -> ObjectPath:
        return ObjectPath(self.fs, "/".join([self.key, *parts]))

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def parent(self) -> ObjectPath:
        return ObjectPath(self.fs, self.key.rsplit("/", 1)[0]) if "/" in self.key else self

    @property
    def bucket(self) -> str:
        return self.key.split("/", 1)[0]

    def with_name(self, name: str) -> ObjectPath:
        return self.parent / name

    def expanduser(self) -> ObjectPath:
        return self

    def resolve(self) -> ObjectPath:
        return self

    absolute = resolve

    def __str__(self) -> str:
        return f"s3://{self.key}"

    def __repr__(self) -> str:
        return f"ObjectPath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectPath) and self.key == other.key and self.fs is other.fs

    def __hash__(self) -> int:
        return hash(("s3", self.key))

    def __lt__(self, other: ObjectPath) -> bool:
        return self.key < other.key


StorePath = Path | ObjectPath


@dataclass(frozen=True)
class Entry:
    """One name in a listing: its ``path`` (an :class:`ObjectPath` carries its ``mtime``), and whether it is a folder.

    The path is built on first use: listing a root of 10,000 runs needs only the names."""

    name: str
    parent: StorePath
    is_dir: bool
    _path: StorePath | None = None

    @property
    def path(self) -> StorePath:
        return self._path if self._path is not None else self.parent / self.name


# -- roots ------------------------------------------------------------------------------------------------------------
def is_uri(text: str) -> bool:
    """Whether ``text`` names an object-store root (``s3://...``)."""
    return urlsplit(text).scheme.lower() in SCHEMES and "://" in text


def open_root(text: str, endpoint_url: str | None = None) -> ObjectPath:
    """The :class:`ObjectPath` of ``s3://bucket[/prefix]``; the filesystem is built (and cached) from the AWS
    configuration now. ``endpoint_url`` overrides ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``."""
    parts = urlsplit(text)
    if not parts.netloc:
        raise ValueError(f"store root {text!r} names no bucket; use s3://BUCKET/PREFIX")
    endpoint = endpoint_url or next((os.environ[k] for k in ENV_ENDPOINTS if os.environ.get(k)), None)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region is None and endpoint is None:  # AWS itself: ask where the bucket lives (one request, once)
        region = _bucket_region(parts.netloc)
    return ObjectPath(_s3(endpoint, region), f"{parts.netloc}/{parts.path}")


@functools.lru_cache(maxsize=64)
def _bucket_region(bucket: str) -> str | None:
    """The AWS region of ``bucket``, or None when it cannot be asked (offline: the SDK's default applies)."""
    try:
        return pafs.resolve_s3_region(bucket)
    except (OSError, ValueError):
        return None


@functools.lru_cache(maxsize=8)
def _s3(endpoint: str | None, region: str | None) -> pafs.FileSystem:
    """One S3 client per (endpoint, region) per process: its connection pool is shared by every store on it."""
    try:
        from pyarrow.fs import S3FileSystem
    except ImportError:  # a pyarrow built without S3 (some conda builds)
        raise MissingExtra("this pyarrow has no S3 support; install the PyPI wheel: pip install pyarrow") from None
    # allow_delayed_open: an object smaller than one upload part (~10 MB: every segment) is ONE PutObject, made
    # visible whole; larger ones use a multipart upload, which S3 shows only once completed (a failed part never
    # completes it).
    kwargs: dict[str, Any] = {"allow_delayed_open": True, **({"region": region} if region else {})}
    if endpoint:
        url = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        kwargs.update(endpoint_override=url.netloc + url.path.rstrip("/"), scheme=url.scheme or "https")
    return S3FileSystem(**kwargs)


class BucketNotFound(EntropyWatchError):
    """The bucket of an ``s3://`` store does not exist at the endpoint (a misspelt name, the wrong endpoint)."""


def check_bucket(root: ObjectPath) -> None:
    """Raise :class:`BucketNotFound` when ``root``'s bucket does not exist (one request). A LIST in a missing bucket
    reads as an empty prefix: ``ls``/``alerts`` on ``s3://misspelt-bucket`` printed "no runs" and exited 0. A
    bucket the credentials may not inspect (a policy that allows listing one prefix only refuses the bucket's HEAD)
    is not known to be missing: nothing is raised, and the empty listing stands."""
    try:
        info = root.fs.get_file_info(root.bucket)
    except OSError:  # refused (403), or the service could not say: not evidence of a missing bucket
        return
    if info.type == pafs.FileType.NotFound:
        raise BucketNotFound(
            f"bucket {root.bucket!r} does not exist (store {root}); check its name, --endpoint-url / "
            "AWS_ENDPOINT_URL_S3 and AWS_REGION"
        )


def is_object(path: StorePath) -> bool:
    """Whether ``path`` is in an object store (no rename, no locks, no temporaries)."""
    return isinstance(path, ObjectPath)


def describe_error(exc: BaseException) -> str:
    """A one-line reason for an I/O error from either backend (``strerror`` locally, the message from S3)."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())[:300]


# -- listing ----------------------------------------------------------------------------------------------------------
def listdir(path: StorePath, *, follow: bool = False) -> list[Entry]:
    """The entries directly under ``path``. A missing local folder raises ``FileNotFoundError``; a prefix with no keys
    lists as empty (an object store has no empty folders).

    A store holds only what lies inside it: symbolic links below the root are not followed. A linked entry is left
    out, and a folder that is itself a link lists as missing, unless ``follow`` (the root, which may be a link to
    where the store lives). A link planted in a store (``seg-….parquet -> ~/private.parquet``, ``run=x ->
    /elsewhere``) would otherwise hand files from outside it to ``sql``, ``export``, the report and the app.
    """
    if isinstance(path, ObjectPath):
        infos = path.fs.get_file_info(pafs.FileSelector(path.key, allow_not_found=True, recursive=False))
        return [_entry(path.fs, info) for info in infos]
    if not follow and is_link(path):
        raise FileNotFoundError(errno.ENOENT, "a symbolic link inside the store is not followed", str(path))
    with os.scandir(path) as it:  # a FIFO, socket or device is no store file: opening a FIFO blocks forever
        return [Entry(e.name, path, e.is_dir(follow_symlinks=False)) for e in it if _plain(e)]


def _plain(entry: os.DirEntry[str]) -> bool:
    """A folder or a regular file, neither a link: what a store holds (the rest is left out, as links are)."""
    return not entry.is_symlink() and (entry.is_dir(follow_symlinks=False) or entry.is_file(follow_symlinks=False))


def is_link(path: StorePath | str) -> bool:
    """Whether a local ``path`` is a symbolic link (never on an object store): what a store never follows."""
    return not isinstance(path, ObjectPath) and os.path.islink(path)


def walk_files(path: StorePath) -> Iterator[tuple[str, StorePath]]:
    """Every file below ``path`` as ``(path relative to it with '/', path)``; one paginated LIST on an object store."""
    if isinstance(path, ObjectPath):
        infos = path.fs.get_file_info(pafs.FileSelector(path.key, allow_not_found=True, recursive=True))
        skip = len(path.key) + 1
        for info in infos:
            if info.type == pafs.FileType.File:
                yield info.path[skip:], _entry(path.fs, info).path
        return
    for dirpath, _, files in os.walk(path):
        for name in files:
            full = Path(dirpath) / name
            yield full.relative_to(path).as_posix(), full


def _entry(fs: pafs.FileSystem, info: pafs.FileInfo) -> Entry:
    mtime = info.mtime_ns / 1e9 if info.mtime_ns is not None else None
    obj = ObjectPath(fs, info.path, mtime)
    return Entry(info.base_name, obj.parent, info.type == pafs.FileType.Directory, obj)


def is_dir(path: StorePath) -> bool:
    """Whether ``path`` is a folder (on an object store: whether any key starts with ``path/``); a local symbolic
    link to a folder is not one (:func:`listdir`)."""
    if isinstance(path, ObjectPath):
        return path.fs.get_file_info(path.key).type == pafs.FileType.Directory
    return path.is_dir() and not path.is_symlink()  # a link is not part of the store (listdir)


def mtime(path: StorePath) -> float:
    """Modification time in Unix seconds (from the listing when it carried one); ``OSError`` if absent."""
    if isinstance(path, ObjectPath):
        if path.mtime is not None:
            return path.mtime
        info = path.fs.get_file_info(path.key)
        if info.type != pafs.FileType.File or info.mtime_ns is None:
            raise FileNotFoundError(str(path))
        return info.mtime_ns / 1e9
    return path.stat().st_mtime


# -- bytes ------------------------------------------------------------------------------------------------------------
def read_bytes(path: StorePath) -> bytes:
    """The whole file; ``FileNotFoundError`` (or another ``OSError``) when it cannot be read. A local file that is a
    symbolic link is not read (``OSError``: :func:`listdir` says why), nor one that is no regular file: a FIFO
    planted as ``_run.json`` blocked ``ls``, ``show`` and the app in ``open`` for good, deaf even to SIGTERM."""
    if isinstance(path, ObjectPath):
        with path.fs.open_input_stream(path.key) as fh:
            return fh.read()
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)  # a FIFO opens at once
    fd = os.open(path, flags)
    with open(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a FIFO, socket or device is not read)", str(path))
        return fh.read()


def put_bytes(path: ObjectPath, data: bytes) -> None:
    """Publish ``data`` at ``path`` with one PUT (visible all at once, or not at all)."""
    with path.fs.open_output_stream(path.key, metadata={"Content-Type": "application/octet-stream"}) as out:
        out.write(data)


def unlink(path: StorePath) -> None:
    """Delete a file; a file already gone is not an error."""
    try:
        if isinstance(path, ObjectPath):
            path.fs.delete_file(path.key)
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass


def makedirs(path: StorePath) -> None:
    """Create a local folder and its parents; nothing on an object store (prefixes exist once a key has them)."""
    if not isinstance(path, ObjectPath):
        path.mkdir(parents=True, exist_ok=True)


def probe(directory: StorePath) -> None:
    """Create ``directory``, then write and delete a hidden probe file in it; ``OSError`` when that fails."""
    path = directory / f".probe.{os.getpid()}.0.tmp"
    if isinstance(path, ObjectPath):
        put_bytes(path, b"")
    else:
        makedirs(directory)
        path.write_bytes(b"")
    unlink(path)


def arrow(path: StorePath) -> tuple[pafs.FileSystem, str]:
    """``(filesystem, path string)`` for pyarrow readers (``pq.read_schema``, ``ParquetFile``, datasets)."""
    if isinstance(path, ObjectPath):
        return path.fs, path.key
    return pafs.LocalFileSystem(), str(path)


def register_duckdb(con: Any, root: StorePath) -> None:
    """Let DuckDB ``con`` read ``s3://`` paths of ``root``'s bucket itself (SQL globs in the catalog views), through
    fsspec's wrapper of the same pyarrow filesystem: no ``httpfs`` download. Nothing to do for a local root."""
    if not isinstance(root, ObjectPath):
        return
    require("fsspec", "s3")
    from fsspec.implementations.arrow import ArrowFSWrapper

    con.register_filesystem(ArrowFSWrapper(root.fs))


def vanished(exc: BaseException) -> bool:
    """Whether a read failed because a listed file was deleted before it was read (compaction): list again."""
    if isinstance(exc, FileNotFoundError):
        return True
    text = str(exc)
    return any(
        marker in text
        for marker in (
            "Path does not exist",
            "No such file",
            "No files found",
            "NO_SUCH_KEY",
            "key does not exist",
            "RESOURCE_NOT_FOUND",  # the AWS SDK's name for a 404 without a body (HEAD; some GETs of a deleted key)
        )
    )


# The AWS SDK's names of faults that pass: a connection dropped mid-answer ("curlCode: 18, Transferred a partial
# file"; "Failed to flush response stream" as INTERNAL_FAILURE), a server busy or briefly failing (500, 503 SlowDown:
# AWS's documented advice is to retry them). The SDK retries each request a few times itself; these outlasted that.
PASSING_FAULTS = (
    "NETWORK_CONNECTION", "INTERNAL_FAILURE", "SERVICE_UNAVAILABLE", "SLOW_DOWN", "THROTTLING", "REQUEST_TIMEOUT",
)  # fmt: skip


def passing(exc: BaseException) -> bool:
    """Whether a read of an object store failed on a fault that passes (:data:`PASSING_FAULTS`): read again."""
    text = str(exc)
    return "AWS Error " in text and any(f"AWS Error {name}" in text for name in PASSING_FAULTS)


def refused(exc: BaseException) -> bool:
    """Whether a read failed because the object store refused or could not serve the request (access denied, expired
    or missing credentials, a KMS key the reader may not use, throttling, a network or server error), not because of
    the file: such a file is not unreadable, and the read fails with the service's reason instead of skipping it.
    A vanished key is not refused (:func:`vanished`: list again)."""
    return "AWS Error " in str(exc) and not vanished(exc)
