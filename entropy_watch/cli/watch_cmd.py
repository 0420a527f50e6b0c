"""``watch``: follow live runs (a store's, or logs another tool is writing) and print new alerts as they appear.

Without targets it follows every run in the store, new ones too (an empty store says so). Exit status: 0, or 1 on
errors like every other command (``--once``: 1 when a target could not be read: a run not in the store, a log folder
without logs, an unreadable log; without ``--once`` a named run not in the store yet is waited for, but a log path that
is not there is an error either way); ``--notify`` exits 1 when a notification could not be delivered (it waits for
the retries first; while it runs, the first failure to each destination is one line on stderr); Ctrl-C exits 130,
SIGTERM 143 (``boundary.py``). ``watch`` ends (exit 0) once nobody reads what it prints (``watch | head -1``: the
first alert, then the pipeline goes on).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from entropy_watch.cli.alerts_cmds import (
    EMPTY_TARGET,
    _lexists,
    _looks_like_path,
    _plural,
    _severity,
    _store_alerts,
)
from entropy_watch.cli.boundary import interrupted_code
from entropy_watch.cli.common import (
    LogMap,
    LogRewardMax,
    LogVocab,
    echo,
    error_line,
    fail,
    log_options,
    positive,
    print_empty_store,
    printable,
    reader_gone,
    state,
    stdout_gone,
)
from entropy_watch.errors import EntropyWatchError, listed, run_not_found, runs_hint

if TYPE_CHECKING:
    from entropy_watch.analysis import Alert

STOP_WAIT_S = 10.0  # after Ctrl-C: how long watch still waits for queued notifications
WATCH_KEEP_RUNS = 8
"""``watch`` over a store holds the rows (and the analysis) of at most this many runs: those whose data moved again
after their first analysis (the live ones); every other run is read from its files when it changes."""


def register(app: typer.Typer) -> None:
    app.command("watch")(watch)


def _line(run: str, a: Alert) -> str:
    return printable(f"[{run}] step {a.step} {a.severity.upper()} {a.kind} ({a.detector}): {a.message}")


def watch(
    ctx: typer.Context,
    runs: Annotated[
        list[str] | None,
        typer.Argument(
            help="Runs to follow (default: every run in the store, new ones too), or log files / folders another "
            "tool is writing (trackio, W&B offline, verl JSONL, TRL output, CSV...), re-read as they grow."
        ),
    ] = None,
    interval: float = typer.Option(10.0, "--interval", callback=positive, help="Seconds between polls."),
    iterations: int | None = typer.Option(
        None, "--iterations", min=1, help="Stop after this many polls (default: never)."
    ),
    once: bool = typer.Option(
        False,
        "--once",
        help="Poll once and exit: 1 when a target could not be read (a run not in the store, a log folder without "
        "logs, an unreadable log) or a notification could not be delivered, else 0.",
    ),
    min_severity: str = typer.Option(
        "warning", "--min-severity", callback=_severity, help="info, warning or critical."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per alert."),
    write: bool = typer.Option(False, "--write/--no-write", help="Store new alerts in each run's alerts table."),
    notify: Annotated[
        list[str] | None,
        typer.Option(
            "--notify",
            help="Send new alerts (at --min-severity and up) and recoveries to a webhook: a Slack or Discord webhook "
            "URL, slack+URL, discord+URL, json+URL, env:NAME or env ($ENTROPY_WATCH_NOTIFY). Repeatable. What runs "
            "already show at the first poll is printed, not sent. Exit 1 when one could not be delivered.",
        ),
    ] = None,
    notify_runs: int | None = typer.Option(
        None,
        "--notify-runs",
        min=0,
        help="With --notify: how many runs get their own messages within an hour; what the others' alerts and "
        "recoveries say goes out folded into one digest message (0: every message in digests). Default 3.",
        show_default=False,
    ),
    app_url: str | None = typer.Option(
        None, "--app-url", help="The app's address, linked from notifications (default $ENTROPY_WATCH_APP_URL)."
    ),
    maps: LogMap = None,
    vocab_size: LogVocab = None,
    reward_max: LogRewardMax = None,
) -> None:
    """Follow live runs and print new alerts as they appear (Ctrl-C stops); --notify also sends them."""
    import json

    from entropy_watch.analysis import SEVERITIES
    from entropy_watch.analysis.policy import filter_alerts
    from entropy_watch.monitor import Monitor
    from entropy_watch.store import TailReader
    from entropy_watch.store.query import run_names

    if min_severity not in SEVERITIES:
        fail(f"--min-severity must be one of {', '.join(SEVERITIES)}, got {min_severity!r}")
    if once and iterations is not None:  # --iterations was silently ignored
        raise typer.BadParameter("--once polls once; give --once or --iterations N, not both", param_hint="--once")
    root = state(ctx).root()
    folders = _run_folders(runs or [])
    if folders is not None:  # `watch ew_runs/run=*`, as `alerts` and `report` take run folders
        root, runs = folders
    errors = 0

    def on_new_alerts(run: str, new: list[Alert], verdict: Any) -> None:
        try:
            for a in filter_alerts(new, min_severity=min_severity):  # printed first: a store that refuses the write
                echo(json.dumps({"run": run, **a.to_dict()}) if as_json else _line(run, a))  # loses no alert
        except OSError as e:  # stdout on a full disk: one line, an error (exit 1); stored with --write all the same
            on_error(run, f"new alerts not printed: {error_line(e)}")
        if write and (why := _store_alerts(root, run, new)) is not None:  # one line, an error; the watch goes on
            on_error(run, f"the alerts above were not stored: error: {why}")
        if reader_gone():  # `watch | head -1` got what it waited for: nobody reads on, so watch ends (it polled on)
            monitor.stop(0.0)

    def on_waiting(run: str, reason: str) -> None:
        if run in absent:  # named, not in the store yet: say which runs are, once
            absent.discard(run)
            reason = f"run {run!r} is not in the store yet ({runs_hint(run, stored)})"
        typer.echo(printable(f"[{run}] waiting: {reason}"), err=True)

    def on_error(run: str, message: str) -> None:
        nonlocal errors
        errors += 1
        typer.echo(printable(f"[{run}] {message}"), err=True)

    options = log_options(maps, vocab_size, reward_max)
    logs = _log_targets(runs or [], write=write, file_options=options.given())
    stored = [] if logs else run_names(root)
    absent = set(runs or []) - set(stored) if not logs else set()
    if once and not logs:
        runs, errors = _present(runs, stored, root, as_json)
    if notify_runs is not None and not notify:  # it was silently ignored: nothing is sent without --notify
        raise typer.BadParameter("it applies only with --notify (a webhook to send to)", param_hint="--notify-runs")
    relay = _relay(notify, min_severity, app_url, notify_runs)
    if relay is not None and once:  # the relay's baseline is the first poll, and --once polls once
        typer.echo("note: --once sends no notifications: --notify sends what appears after the first poll", err=True)
    if logs:
        from entropy_watch.importers.follow import LogReader

        def on_note(run: str, note: str) -> None:
            if not as_json:
                typer.echo(printable(f"[{run}] note: {note}"), err=True)

        reader: Any = LogReader(logs, options, on_error=on_error, on_note=on_note)
    else:
        # bounded: a 200-run store mirrored whole held every row (store/tail.py "Bounded memory")
        reader = TailReader(root, tables=("scalars", "hist", "events"), runs=runs or None, keep=WATCH_KEEP_RUNS)
        _say_refused(reader, on_error)
    on_analysis = relay.on_analysis if relay is not None else None
    if not logs:
        on_analysis = _follow_live(reader, on_analysis)
    monitor = Monitor(
        reader,
        None if logs else runs or None,
        on_new_alerts=on_new_alerts,
        on_waiting=on_waiting,
        on_error=on_error,
        on_analysis=on_analysis,
        keep=None if logs else WATCH_KEEP_RUNS,
    )
    if not once and _interactive():  # a terminal's user, else a silent screen until the first alert
        what = listed(logs) if logs else _runs_said(runs, stored, root)
        typer.echo(printable(f"watching {what}, every {interval:g} s: new alerts at {min_severity} and up print "
                             "here as they appear; Ctrl-C stops"), err=True)  # fmt: skip
    ended = False
    _stop_when_reader_goes(lambda: monitor.stop(0.0))  # `watch | head -1` on a quiet store ends after the line too
    try:
        monitor.follow(interval, iterations=1 if once else iterations)
        ended = True
    except KeyboardInterrupt:  # Ctrl-C (or SIGTERM) is how watch stops: quiet, exit 130 (143), as in boundary.py
        raise SystemExit(interrupted_code()) from None
    finally:
        reader.close()
        # what is queued is sent before the exit status is decided: retries included when watch ended as asked,
        # a bounded wait after Ctrl-C or an error
        undelivered = _finish_notify(relay, None if ended else STOP_WAIT_S) if relay is not None else 0
    if (once and errors) or undelivered:
        raise typer.Exit(1)


def _interactive() -> bool:
    """Whether a person reads stderr (a terminal): ``watch`` then says once what it follows."""
    return sys.stderr is not None and sys.stderr.isatty()  # as `import` decides on its progress bar


def _runs_said(runs: list[str] | None, stored: list[str], root: Path) -> str:
    """What ``watch`` follows in the store ``root``: the named runs, or every run (how many now) and new ones."""
    if runs:
        return f"{listed(runs)} in {root}"
    now = f"{_plural(len(stored), 'run')} now" if stored else "no runs yet"
    return f"every run in {root} ({now}, new ones too)"


def _say_refused(reader: Any, on_error: Callable[[str, str], None]) -> None:
    """After each poll of ``reader`` (a :class:`~entropy_watch.store.TailReader`), one error line per run it could not
    list (another user's private run in a shared store: the poll read the others), once until it can be read again;
    unsaid, it was never analysed and never named."""
    said: set[str] = set()
    poll = reader.poll

    def poll_and_say() -> int:
        out = poll()
        for run, why in sorted(reader.refused.items()):
            if run not in said:
                on_error(run, f"error: the run cannot be read ({why}); the other runs are followed")
        said.intersection_update(reader.refused)
        said.update(reader.refused)
        return out

    reader.poll = poll_and_say


def _follow_live(reader: Any, then: Callable[[Any], None] | None) -> Callable[[Any], None]:
    """``watch``'s ``on_analysis``: a run analysed a second time (its data moved: a live run) is followed by the
    reader, which holds its rows from the next poll on and reads only its new files after (a run analysed once, at
    the start, is read from its files once and not held); then ``then``."""
    seen: set[str] = set()

    def on_analysis(state: Any) -> None:
        if state.run in seen:
            reader.follow(state.run)
        seen.add(state.run)
        if then is not None:
            then(state)

    return on_analysis


def _stop_when_reader_goes(stop: Callable[[], None]) -> None:
    """When stdout is a pipe, call ``stop`` as soon as its reader goes away, between writes too (a daemon thread
    polling the pipe, as ``tail -f`` does): ``watch | head -1`` waited, after its line, for a next alert to find out,
    so a quiet store's pipeline never ended. Nothing for a file or a terminal, or without ``poll``."""
    import select
    import stat
    import threading

    try:
        fd = sys.stdout.fileno()
        if not hasattr(select, "poll") or not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return
    except (OSError, ValueError, AttributeError):  # no file descriptor (a test's capture)
        return
    gone = select.POLLERR | select.POLLHUP  # the write end of a pipe whose reader closed reports POLLERR

    def wait() -> None:
        poller = select.poll()
        poller.register(fd, select.POLLERR)  # not POLLOUT: writable is no news
        while not any(ev & gone for _, ev in poller.poll(500)):
            pass
        stdout_gone()
        stop()

    threading.Thread(target=wait, name="entropy-watch-stdout", daemon=True).start()


def _present(runs: list[str] | None, stored: list[str], root: Path, as_json: bool) -> tuple[list[str] | None, int]:
    """``watch --once`` over store runs: the named runs the store holds (None: every run) and how many it does not
    hold (an error line each; exit 1 at once when none is left). An empty store says so: nothing to watch."""
    if not runs:
        if not stored and not as_json:
            print_empty_store(root)
        return None, 0
    missing = [r for r in runs if r not in stored]
    for r in missing:
        typer.echo(printable(f"error: {run_not_found(r, root, stored)}"), err=True)
    present = [r for r in runs if r in stored]
    if not present:
        raise typer.Exit(1)
    return present, len(missing)


def _run_folders(targets: list[str]) -> tuple[Path, list[str]] | None:
    """``(store root, run names)`` when every target is a run folder ``.../run=NAME`` of one store (the catalog
    placeholder a glob names skipped), else None; run folders of several stores are a usage error."""
    from entropy_watch.store.catalog import PLACEHOLDER_RUN_DIR

    paths = [Path(t).expanduser() for t in targets]
    if not paths or not all(p.is_dir() and p.name.startswith("run=") for p in paths):
        return None
    roots = {p.parent.resolve() for p in paths}
    if len(roots) > 1:
        raise typer.BadParameter("watch follows one store: the run folders given are in several")
    names = [p.name[len("run=") :] for p in paths if p.name != PLACEHOLDER_RUN_DIR]
    return paths[0].parent, list(dict.fromkeys(names))


def _log_targets(targets: list[str], *, write: bool, file_options: list[str]) -> list[str]:
    """The targets of ``watch`` when they are log paths (all of them), else [] (store runs); mixing the two, or the
    log-only options on store runs, or ``--write`` on logs (which have no alerts table) is a usage error."""
    for t in targets:  # as `alerts` says them: a missing log is no run to wait for, nor a bad run name
        if not t.strip():
            raise EntropyWatchError(f"{t!r} names nothing; {EMPTY_TARGET}")
        if _looks_like_path(t) and not _lexists(Path(t).expanduser()):
            raise EntropyWatchError(f"{t}: no such file or directory")
    paths = [t for t in targets if _lexists(Path(t).expanduser())]
    if paths and len(paths) != len(targets):
        names = ", ".join(t for t in targets if t not in paths)
        raise typer.BadParameter(f"give store runs or log paths, not both ({names} is no file or folder)")
    if file_options and not paths:
        verb = "applies" if len(file_options) == 1 else "apply"
        raise typer.BadParameter(f"{', '.join(file_options)} {verb} to log files; name the logs to follow")
    if write and paths:
        raise typer.BadParameter("--write stores alerts in a store run; a log file has none (import it first)")
    return paths


def _relay(specs: list[str] | None, min_severity: str, app_url: str | None, runs: int | None = None) -> Any:
    """The notification relay for ``watch --notify`` (None without ``--notify``); a bad spec is a usage error that
    never echoes the URL. A message not delivered is one line on stderr, the first time for each destination.
    ``runs``: the store-wide budget's :attr:`~entropy_watch.notify.DigestPolicy.max_runs` (None: its default)."""
    if not specs:
        return None
    from entropy_watch.notify import DigestPolicy, Notifier, NotifyConfigError, NotifyPolicy
    from entropy_watch.notify.relay import MonitorRelay, SayOnce

    def say(line: str) -> None:
        typer.echo(printable(line), err=True)

    from entropy_watch.notify.notifier import APP_URL_ENV, check_app_url

    policy = NotifyPolicy(min_severity=min_severity)
    try:
        check_app_url(app_url, "--app-url")
    except NotifyConfigError as e:
        raise typer.BadParameter(str(e).removeprefix("--app-url: "), param_hint="--app-url") from None
    try:
        notifier = Notifier.build(specs, policy=policy, app_url=app_url, on_failure=SayOnce(say))
    except NotifyConfigError as e:
        if str(e).startswith(APP_URL_ENV):  # the environment's, not an option's: one line, exit 1
            raise EntropyWatchError(f"{e}; set it to the app's address or unset it") from None
        raise typer.BadParameter(str(e).removeprefix("notify: "), param_hint="--notify") from None
    if notifier is None:
        return None
    typer.echo(printable(f"notifying: {', '.join(t.label for t in notifier.targets)}"), err=True)
    return MonitorRelay(notifier, DigestPolicy() if runs is None else DigestPolicy(max_runs=runs))


def _finish_notify(relay: Any, wait_s: float | None) -> int:
    """Deliver what ``watch --notify`` queued, waiting at most ``wait_s`` (None: until each message is delivered or
    has failed, retries included); print how many were not delivered and return that number."""
    from entropy_watch.notify.relay import summary

    delivery = relay.notifier.delivery
    if wait_s is None and not delivery.drain(1.0):  # retries can take a while: say what watch is waiting for
        n = delivery.pending
        typer.echo(f"waiting for {_plural(n, 'notification')} still being sent (Ctrl-C stops waiting)", err=True)
    relay.close(wait_s)
    failed, line = summary(delivery)
    if line is not None:
        typer.echo(line, err=True)
    return failed
