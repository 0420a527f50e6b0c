"""The command line's edges: global options accepted on either side of the command name, and the error boundary.

Exit codes (every command): 0 success, 1 a domain error (one line on stderr: ``error: ...``), 2 a usage mistake
(typer's usage message: missing argument, unknown command or option, a bad option value), 130 interrupted
(Ctrl-C: quiet, whatever was running when the signal arrived), 143 terminated (SIGTERM: a CI timeout, ``docker
stop``, ``kill``; handled as Ctrl-C is, so temporaries are removed and ``watch`` sends what it queued, except by
``train``, ``compare`` and ``app``, which handle it themselves). ``alerts`` has its own codes (its module docstring).
A reader of stdout that goes away (``| head -1``) changes no exit status: the rest of the output goes nowhere.

Usage errors are left to typer/click in standalone mode, so the boundary never needs to know which click raised
them (typer >= 0.29 bundles its own copy). Only what escapes click -- our domain errors and bugs -- reaches
:func:`run`.
"""

from __future__ import annotations

import codecs
import copy
import io
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
import typer.core

from entropy_watch.cli.common import State, exit_on_error, note_args, reader_gone, reset_reader

# Options of the app callback that every command also accepts after its name (`entropy-watch ls --store DIR`).
GLOBAL_AFTER_COMMAND: tuple[str, ...] = ("store", "debug")
# Commands that handle SIGTERM themselves: the trainer's recorder marks its run "terminated", `app` stops its child.
OWN_SIGTERM: frozenset[str] = frozenset({"train", "compare", "app"})
EXIT_INTERRUPTED = 130  # 128 + SIGINT


class GlobalOptionsGroup(typer.core.TyperGroup):
    """The app's command group: copies the global ``--store``/``--debug`` options onto every command.

    A copied option sets the same field of the run's :class:`State` (the group callback has built it before a
    command parses its own options), so ``entropy-watch --store A ls`` and ``entropy-watch ls --store A`` are the same.
    A command that declares an option of the same name or flag keeps its own.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        globals_ = [p for p in self.params if p.name in GLOBAL_AFTER_COMMAND]
        for cmd in self.commands.values():
            taken = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {p.name for p in cmd.params}
            for param in globals_:
                if param.name in taken or taken.intersection(param.opts):
                    continue
                local = copy.copy(param)
                local.expose_value = False  # the command function does not take it; the callback stores it
                local.is_eager = False
                local.callback = _set_global
                cmd.params.append(local)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        """The command to run; SIGTERM then stops it as Ctrl-C does, unless it handles SIGTERM itself."""
        name, cmd, rest = super().resolve_command(ctx, args)
        if name not in OWN_SIGTERM:
            _Interrupts.term_as_interrupt()
        return name, cmd, rest

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)  # resolves the command (resolve_command) and runs it
        except KeyboardInterrupt:  # older click turns it into Abort ("Aborted!", exit 1); Ctrl-C is 130
            raise SystemExit(interrupted_code()) from None
        finally:  # however the app was invoked (main, CliRunner, a caller's own click context)
            _Interrupts.term_restore()


def _set_global(ctx: Any, param: Any, value: Any) -> Any:
    """Store a global option given after the command name; a value left at its default changes nothing."""
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    if value is not None and value is not False and param.name is not None:
        setattr(root.obj, param.name, value)
    return value


class _Interrupts:
    """Whether SIGINT (or SIGTERM, taken as it) arrived during this invocation (an error raised while stopping is no
    bug to report), the exit status it sets, and whether this invocation installed the SIGTERM handler."""

    seen = False
    code = EXIT_INTERRUPTED
    term_installed = False

    @classmethod
    def term_as_interrupt(cls) -> None:
        """Take SIGTERM as Ctrl-C (exit 143): only in the main thread, when it has Python's default action (ended
        at once: an export's or import's temporaries were left behind, `watch` as PID 1 in a container ignored
        `docker stop`)."""
        if cls.term_installed or threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_interrupt)
            cls.term_installed = True

    @classmethod
    def term_restore(cls) -> None:
        """Put back the default SIGTERM action :meth:`term_as_interrupt` replaced, while ours is still installed."""
        if not cls.term_installed or threading.current_thread() is not threading.main_thread():
            return
        cls.term_installed = False
        if signal.getsignal(signal.SIGTERM) is _on_interrupt:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def interrupted_code() -> int:
    """The exit status of an interrupted command: 130 after Ctrl-C, 143 after SIGTERM (128 + the signal)."""
    return _Interrupts.code


def _on_interrupt(signum: int, frame: Any) -> None:
    _Interrupts.seen = True
    _Interrupts.code = 128 + signum
    signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt where the main thread is


@contextmanager
def _track_sigint() -> Iterator[None]:
    """Record Ctrl-C while keeping Python's KeyboardInterrupt; only when the default handler is installed. Restores
    the SIGTERM handler a command installed (:meth:`_Interrupts.term_as_interrupt`)."""
    _Interrupts.seen, _Interrupts.code, _Interrupts.term_installed = False, EXIT_INTERRUPTED, False
    install = threading.current_thread() is threading.main_thread() and (
        signal.getsignal(signal.SIGINT) is signal.default_int_handler
    )
    if install:
        signal.signal(signal.SIGINT, _on_interrupt)
    try:
        yield
    finally:
        if install:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        _Interrupts.term_restore()


def _stdout_is_devnull() -> bool:
    """Whether stdout's file descriptor is /dev/null. typer prints ``--help`` on a rich console of its own, whose
    broken-pipe handler points stdout there and exits 1 (``entropy-watch --help | grep -q alerts`` failed under
    ``set -o pipefail``); every other output goes through :func:`~entropy_watch.cli.common.console` or ``echo``,
    which note the reader's going (:func:`~entropy_watch.cli.common.reader_gone`) and keep the command's status."""
    try:
        return os.path.samestat(os.fstat(sys.stdout.fileno()), os.stat(os.devnull))
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):  # no descriptor (a test's capture)
        return False


def _stdout_pacified() -> bool:
    """Whether click's broken-pipe handler has run: it swaps stdout for its ``PacifyFlushWrapper`` and exits 1. Help
    reaches it too: rich's console writes the help and click then echoes the rest (a last line break), so under
    ``entropy-watch --help | grep -q alerts`` grep has read its match and left before that echo, and most runs
    exited 1 (the reader took rich's part, so :func:`_stdout_is_devnull` saw no /dev/null)."""
    return type(sys.stdout).__name__ == "PacifyFlushWrapper"  # click's and typer's bundled copy alike


def _lossless_output() -> None:
    """Print what an encoding cannot hold as escapes (``caf\\xe9``), never fail on it: with ``PYTHONIOENCODING=ascii``
    or a Latin-1 locale a run name like ``café`` made every table fail (``error: 'ascii' codec can't encode``,
    ``alerts`` exiting 3). click's echo already replaces what it cannot encode."""
    for stream in (sys.stdout, sys.stderr):
        if not isinstance(stream, io.TextIOWrapper) or stream.errors != "strict":
            continue
        try:
            if codecs.lookup(stream.encoding).name != "utf-8":
                stream.reconfigure(errors="backslashreplace")
        except (LookupError, ValueError, io.UnsupportedOperation):  # an unknown codec, a stream already in use
            pass


def run(app: typer.Typer, argv: list[str] | None = None) -> None:
    """Run ``app`` as the console script does: returns on success, else exits with a code the module docstring
    lists (``SystemExit``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in (args[: args.index("--")] if "--" in args else args)
    reset_reader()
    note_args(args)
    _lossless_output()
    was_devnull, was_pacified = _stdout_is_devnull(), _stdout_pacified()
    with _track_sigint():
        try:
            app(args=args, prog_name="entropy-watch", standalone_mode=True)  # click handles its own usage errors
        except SystemExit as e:
            went = (not was_devnull and _stdout_is_devnull()) or (not was_pacified and _stdout_pacified())
            if e.code == 1 and went and not reader_gone():
                return  # help's reader went away (above): the help was asked for and printed what was read
            if e.code not in (0, None):
                raise
        except KeyboardInterrupt:
            sys.exit(interrupted_code())
        except Exception as e:  # noqa: BLE001 - the boundary: domain errors one line, the rest "internal error"
            if _Interrupts.seen:  # e.g. DuckDB turning the KeyboardInterrupt into its own exception
                sys.exit(interrupted_code())
            exit_on_error(e, debug=debug)
