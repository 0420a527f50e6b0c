"""Shared CLI pieces: the global state object, one-line errors, JSON/table output, data printed as data.

Every value that comes from data (run names, file and column names, token text, SQL results, messages that quote
them) goes through :func:`text` (a rich ``Text``: never parsed as markup) or :func:`printable` (control characters
shown escaped, so a log cannot drive the terminal).
"""

from __future__ import annotations

import csv
import inspect
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from entropy_watch.aliases import canonical_key
from entropy_watch.errors import EntropyWatchError, ImportFormatError, first_line
from entropy_watch.textsafe import FORMAT_CHARS, FORMAT_RE

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

# Where to point a user whose store is empty: commands that exist.
EMPTY_STORE_HINT = "record one with `make demo`, `entropy-watch train` or `entropy-watch import FILE`"


def print_empty_store(root: object) -> None:
    """The line `ls` and `alerts` print for a store with no runs (not an error: nothing to list or alert on)."""
    console().print(text(f"no runs in {root} ({EMPTY_STORE_HINT})"))


INTERNAL_ERROR = "internal error ({name}); rerun with --debug and report it"
PIPE_WIDTH = 100_000  # a table printed to a pipe or file is as wide as its content (no words cut); COLUMNS wins
# Errors that describe the input (a file, a query, the store's contents), not a bug: one plain line.
INPUT_ERRORS: tuple[type[BaseException], ...] = (
    EntropyWatchError,
    OSError,
    ValueError,  # UnicodeDecodeError, json.JSONDecodeError, pyarrow.ArrowInvalid, ...
    OverflowError,
    RecursionError,  # deeply nested JSON
    MemoryError,
    csv.Error,  # "field larger than field limit"
)
INPUT_ERROR_MODULES = frozenset({"duckdb", "_duckdb", "pyarrow"})  # their errors are about the query or the files
# C0 controls and the characters that move or hide text (entropy_watch.textsafe): escaped in every printed value
_CONTROL = re.compile(f"[\x00-\x1f{FORMAT_CHARS}]")
_JSON_UNESCAPED = FORMAT_RE  # what json.dumps leaves raw (it escapes C0 itself)


@dataclass
class State:
    """Global options, passed to every command through ``ctx.obj``."""

    store: str | None = None
    debug: bool = False

    def root(self, *, existing: bool = False) -> Path:
        """The store root (``--store``, else ``$ENTROPY_WATCH_DIR``, else ``./ew_runs``). A local path that is a file is
        a usage error (a CI gate must not pass on a mistyped store); with ``existing`` (commands that read what a
        store holds: ``ls``, ``show``, ``sql``, ``alerts`` over the store, ``compact``, ``export``) a local folder that
        is not there, or an ``s3://`` prefix with nothing under it, is a domain error: ``alerts --store
        /tmp/nonexist`` in a cron job passed on "no runs"."""
        from entropy_watch.store.layout import default_root

        root = default_root(self.store)
        if isinstance(root, Path):
            if root.exists() and not root.is_dir():
                raise typer.BadParameter(
                    f"{root} is a file, not a store folder; pass --store DIR", param_hint="--store"
                )
            if existing and not root.exists():
                raise EntropyWatchError(f"no store at {root}; pass --store DIR ({EMPTY_STORE_HINT})")
        elif existing:  # an object store: nothing under the prefix is what a missing folder is (one request)
            from entropy_watch.store import fs

            if not fs.is_dir(root):
                fs.check_bucket(root)  # a bucket that is not there says so
                raise EntropyWatchError(f"no store at {root}; pass --store s3://BUCKET/PREFIX ({EMPTY_STORE_HINT})")
        return root


def state(ctx: typer.Context) -> State:
    """The global options of this invocation (defaults when a command is invoked without the callback)."""
    obj = ctx.find_root().obj
    return obj if isinstance(obj, State) else State()


class _Args:
    """The values this invocation was given (its command-line arguments) that hold a line break."""

    broken: tuple[str, ...] = ()


def note_args(args: list[str]) -> None:
    """Remember the arguments of this invocation that hold a line break (a file named ``a\\nb.csv``), so that a
    one-line error quoting one is not cut inside it (:func:`one_line`)."""
    from pathlib import Path

    found: set[str] = set()
    for arg in args:
        if "\n" in arg or "\r" in arg:
            found.update({arg, str(Path(arg)), str(Path(arg).expanduser())})
    _Args.broken = tuple(sorted(found, key=len, reverse=True))  # the longest first: a path before its parent


def one_line(err: BaseException | str) -> str:
    """:func:`~entropy_watch.errors.first_line` of ``err``, where an argument of this invocation quoted in it stays
    whole, its line breaks escaped: ``alerts $'a\\nb.csv'`` said ``error: a\\nb.csv: a`` (the path cut, the reason
    lost)."""
    msg = str(err)
    for arg in _Args.broken:
        msg = msg.replace(arg, printable(arg))
    return first_line(err if msg == str(err) else Exception(msg))


def fail(err: BaseException | str, *, prefix: str = "error", code: int = 1) -> NoReturn:
    """Print ``error: <one line>`` to stderr (control characters escaped) and exit with ``code``."""
    msg = one_line(err)
    typer.echo(f"{prefix}: {printable(msg)}", err=True)
    sys.exit(code)


def is_input_error(err: BaseException) -> bool:
    """True for errors about the user's input (files, query, store contents); False for bugs."""
    return isinstance(err, INPUT_ERRORS) or type(err).__module__.partition(".")[0] in INPUT_ERROR_MODULES


def error_line(err: BaseException, *, where: str | None = None) -> str:
    """``error: <first line>`` for an input error, ``internal error (<type>); ...: <first line>`` for a bug; prefixed
    with ``where`` (a file or run) when the message does not name it already. Control characters escaped."""
    msg = one_line(err)
    if where and where not in msg and printable(where) not in msg:
        msg = f"{where}: {msg}"
    prefix = "error" if is_input_error(err) else INTERNAL_ERROR.format(name=type(err).__name__)
    return printable(f"{prefix}: {msg}")


def exit_on_error(err: BaseException, *, debug: bool, code: int = 1, where: str | None = None) -> NoReturn:
    """The one error boundary: re-raise with ``--debug``; else :func:`error_line` on stderr and exit ``code``."""
    if debug:
        raise err
    typer.echo(error_line(err, where=where), err=True)
    sys.exit(code)


def printable(value: object) -> str:
    """``str(value)`` with control and bidi-override characters escaped (``\\x1b``, ``\\n``, ``\\u202e``), and what
    stdout's encoding cannot hold too (``PYTHONIOENCODING=ascii``: ``café`` -> ``caf\\xe9``; a table measures it so)."""
    out = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(value))
    encoding = None if out.isascii() else _narrow_encoding()
    return out if encoding is None else out.encode(encoding, "backslashreplace").decode(encoding)


def _narrow_encoding() -> str | None:
    """stdout's encoding when it cannot hold every character (ASCII, Latin-1), else None (UTF-8, UTF-16...)."""
    import codecs

    encoding = getattr(sys.stdout, "encoding", None)
    if not isinstance(encoding, str):
        return None
    try:
        return None if codecs.lookup(encoding).name.startswith("utf") else encoding
    except LookupError:
        return None


def text(value: object, style: str = "") -> Text:
    """A data value as rich ``Text``: printed literally (``[/INST]`` stays ``[/INST]``), control characters escaped."""
    from rich.text import Text

    return Text(printable(value), style=style)


def print_table(table: Any, title: str, out: Console | None = None) -> None:
    """``table`` under ``title`` on a line of its own, never wrapped: a title set on a rich table wraps to the
    table's width (``show`` cut a long run name across three lines, on a pipe too)."""
    out = out or console()
    out.print(text(title, "bold"), soft_wrap=True)
    out.print(table)


class _Reader:
    """Whether the reader of stdout went away during this invocation (``watch | head -1``)."""

    gone = False


def reader_gone() -> bool:
    """True once a write to stdout found no reader (:func:`stdout_gone`): what is left to print goes nowhere."""
    return _Reader.gone


def reset_reader() -> None:
    """Forget an earlier invocation's reader (the CLI can run several times in one process, as the tests do)."""
    _Reader.gone = False


def stdout_gone(stream: Any = None) -> None:
    """A reader that stopped early (``alerts | head``, ``| grep -q``): send the rest of ``stream`` (default stdout) to
    /dev/null, so the command ends with its own exit status. Click's own handler exits 1 -- "warning" to a CI gate
    reading ``alerts`` -- and rich's too."""
    stream = sys.stdout if stream is None else stream
    if stream is sys.stdout or stream is sys.__stdout__:
        _Reader.gone = True
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no file descriptor (a test's capture): nothing more to do
        pass


def command_help(fn: Any) -> str:
    """``fn``'s docstring as ``--help`` should show it: each paragraph one line, for the help to wrap to the terminal.
    typer keeps the line breaks of every paragraph after the first, so ``rm --help`` broke off "without one, pass"
    from "--yes" wherever the source line ended."""
    doc = inspect.cleandoc(fn.__doc__ or "")
    return "\n\n".join(" ".join(paragraph.split()) for paragraph in doc.split("\n\n"))


def echo(message: str) -> None:
    """``typer.echo(message)`` to stdout; a reader that went away is :func:`stdout_gone`, not an exit 1."""
    try:
        typer.echo(message)
    except BrokenPipeError:
        stdout_gone()


def console(*, stderr: bool = False) -> Console:
    """A rich console for tables and notes: wrapped to a terminal's width; on a pipe or file as wide as the content
    (:data:`PIPE_WIDTH`), so words are never cut (``COLUMNS`` still sets the width when given). No highlighting:
    values are printed as data."""
    from rich.console import Console

    class PipeConsole(Console):
        def on_broken_pipe(self) -> None:
            """A reader that stopped early (``alerts | head``): the rest goes to /dev/null and the command ends with
            its own exit status (rich's default exits 1, which a CI gate would read as an error)."""
            self.quiet = True
            stdout_gone(sys.stderr if self.stderr else sys.stdout)

    out = PipeConsole(stderr=stderr, highlight=False)
    if _columns() is None:  # COLUMNS unset, or no width (rich took COLUMNS=0 as 0 columns and printed nothing)
        width = PIPE_WIDTH if not out.is_terminal else out.size.width if out.size.width > 0 else _terminal_width()
        out = PipeConsole(stderr=stderr, highlight=False, width=width)
    return out


def _columns() -> int | None:
    """``COLUMNS`` when it is a width (a whole number above 0), else None."""
    value = os.environ.get("COLUMNS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def _terminal_width() -> int:
    """The terminal's width, whatever ``COLUMNS`` says (80 when it cannot be told)."""
    import shutil

    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (OSError, ValueError, AttributeError):
        return shutil.get_terminal_size((80, 24)).columns or 80


VOCAB_HELP = (
    "The policy's vocabulary size V (e.g. 151936 for Qwen2.5), for logs that do not state it: the analysis then "
    "measures an explosion against ln V and knows a near-uniform start."
)
# The options that apply to log files, shared by alerts, watch and report (import words them for itself).
LogMap = Annotated[
    list[str] | None,
    typer.Option("--map", "-m", help="For log files, as in `import`: canonical=COLUMN (step, entropy, reward)."),
]
LogVocab = Annotated[int | None, typer.Option("--vocab-size", min=2, help=f"For log files: {VOCAB_HELP}")]
REWARD_MAX_HELP = (
    "The most the reward can be, when it is not 1 (a sum of reward functions: their count; a score on another "
    "scale): the analysis then tells a solved task from a plateau. Without it, a reward above 1 leaves the task's "
    "state unjudged."
)


def positive(value: float | None) -> float | None:
    """Option callback: a finite number above 0 (a usage error otherwise: NaN and inf too, never a run that trains
    or waits on them)."""
    if value is not None and not 0 < value < float("inf"):
        finite = value == value and abs(value) != float("inf")
        raise typer.BadParameter(
            f"{value:g} is not a positive number" if finite else f"{value:g}; use a finite number > 0"
        )
    return value


LogRewardMax = Annotated[
    float | None, typer.Option("--reward-max", callback=positive, help=f"For log files: {REWARD_MAX_HELP}")
]


def log_options(maps: list[str] | None, vocab_size: int | None, reward_max: float | None) -> Any:
    """The :class:`~entropy_watch.importers.loader.LogOptions` of the log-file options as given."""
    from entropy_watch.importers.loader import LogOptions

    return LogOptions(parse_maps(maps) or None, vocab_size, reward_max)


def parse_maps(items: list[str] | None) -> dict[str, str]:
    """``--map`` values: ``["entropy=ent", "step=iter"]`` -> ``{"entropy": "ent", "step": "iter"}`` (usage error
    when one is not ``canonical=COLUMN`` or names no known metric). Shared by ``import`` and ``alerts``."""
    out: dict[str, str] = {}
    given: dict[str, str] = {}  # canonical name -> the item that mapped it
    for item in items or []:
        key, sep, column = item.partition("=")
        if not sep or not key.strip() or not column.strip():
            raise typer.BadParameter(
                f"{item!r} is not canonical=COLUMN (e.g. entropy=policy_entropy)", param_hint="--map"
            )
        try:
            canonical = canonical_key(key)  # the library's rule; its error becomes a usage error here
        except ImportFormatError as e:
            raise typer.BadParameter(str(e), param_hint="--map") from None
        if canonical in given and out[given[canonical]] != column.strip():  # the last one silently won
            raise typer.BadParameter(f"{given[canonical]}={out[given[canonical]]!r} and {item!r} map one metric "
                                     f"to two columns; keep one", param_hint="--map")  # fmt: skip
        given[canonical] = key.strip()
        out[key.strip()] = column.strip()
    return out


def run_name(value: str | None) -> str | None:
    """Option callback for ``--run``: a name the store accepts, checked before anything is read or trained (a usage
    error, not a failure after the work)."""
    if value is None:
        return None
    from entropy_watch.store.layout import validate_run_name

    try:
        return validate_run_name(value)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


def log_format(value: str | None) -> str | None:
    """Option callback for ``--format``: a known format name (a usage error listing them otherwise)."""
    from entropy_watch.importers.detect import check_format  # the importers: loaded by the command that reads logs

    if value is not None:
        try:
            check_format(value)
        except ImportFormatError as e:
            raise typer.BadParameter(str(e)) from None
    return value


def echo_json(obj: Any) -> None:
    """Print ``obj`` as JSON (NaN/inf become null), the shared ``--json`` output of listing commands."""
    from entropy_watch.jsonable import to_jsonable

    text = json.dumps(to_jsonable(obj), indent=2, ensure_ascii=False)
    # json.dumps escapes only C0 controls; the rest (C1, bidi, U+2028) can occur only inside strings, where \uXXXX
    # is the same value: a script reads the same JSON, a terminal shows it as data
    echo(_JSON_UNESCAPED.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


def fmt_value(v: float | None) -> str:
    """A metric value readable at a glance: 4 significant digits, N/A for missing."""
    import math

    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "N/A"
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and abs(v) < 1e12):
        return str(int(v))
    return f"{v:.4g}"
