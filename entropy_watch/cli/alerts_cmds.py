"""Analysis commands: ``alerts`` (CI/cron-friendly exit status), ``watch`` (follow live runs), ``report`` (HTML).

``alerts`` and ``watch`` without targets read every run in the store (an empty store says so: nothing to alert on). Exit
status of ``alerts``: 0 no warning, 1 at least one warning, 2 at least one critical alert among those that stand — the
verdict's (an episode its headline says cleared is listed, marked "cleared", and not counted; ``--fail-on KINDS`` counts
only those kinds), 3 an error on any target (missing file, unknown run, unreadable log, a bug: one line on stderr naming
the file; the other targets are still analysed and printed). A run that logged no entropy is "nothing to analyse", not
an error. Usage mistakes (a missing argument, an unknown option, a bad option value) also exit 2, with typer's usage
message on stderr. ``watch`` and ``report`` exit 0 (``report`` on a run that logged no entropy too: "nothing to
analyse", no report written), or 1 on errors like every other command (``watch --once``: 1 when a target could not
be read: a run not in the store, a log folder without logs, an unreadable log; without ``--once`` a named run not in
the store yet is waited for, but a log path that is not there is an error either way; ``report``: 1 when a data file
of the run is unreadable, each named on stderr as ``alerts`` names it, the report written from the rest); ``watch
--notify`` exits 1 when a notification could not be delivered (it waits for the retries first; while it runs, the first
failure to each destination is one line on stderr); Ctrl-C exits 130, SIGTERM 143 (``boundary.py``). ``watch`` ends
(exit 0) once nobody reads what it prints (``watch | head -1``: the first alert, then the pipeline goes on).

``alerts --json`` prints a list: per run ``{run, source, alerts, notes, verdict}`` (``verdict`` null for a run with
nothing to analyse), per error ``{run: null, source, error}``; every entry has ``run`` and ``source``.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from entropy_watch.cli.boundary import interrupted_code
from entropy_watch.cli.common import (
    EMPTY_STORE_HINT,
    LogMap,
    LogRewardMax,
    LogVocab,
    console,
    echo,
    echo_json,
    error_line,
    fail,
    log_options,
    one_line,
    positive,
    print_empty_store,
    print_table,
    printable,
    reader_gone,
    state,
    stdout_gone,
    text,
)
from entropy_watch.errors import EntropyWatchError, listed
from entropy_watch.store.atomic import flock
from entropy_watch.store.layout import run_dir

if TYPE_CHECKING:
    from entropy_watch.analysis import Alert, AnalysisResult, RunSeries, Verdict
    from entropy_watch.importers.loader import LogOptions

EXIT_CLEAN, EXIT_WARNING, EXIT_CRITICAL, EXIT_ERROR = 0, 1, 2, 3
SEVERITY_STYLE = {"info": "cyan", "warning": "yellow", "critical": "bold red"}
HEALTH_STYLE = {**SEVERITY_STYLE, "ok": "green", "too-short": "dim"}
LONG_RUN = 2000  # versions above which a progress bar is shown on a terminal
STOP_WAIT_S = 10.0  # after Ctrl-C: how long watch still waits for queued notifications
WATCH_KEEP_RUNS = 8
"""``watch`` over a store holds the rows (and the analysis) of at most this many runs: those whose data moved again
after their first analysis (the live ones); every other run is read from its files when it changes."""
# A target that does not exist and ends like this is a missing file, not a run name.
LOG_SUFFIXES = (
    *(".csv", ".tsv", ".json", ".jsonl", ".log", ".txt", ".parquet"),
    *(".gz", ".bz2", ".xz", ".db", ".sqlite", ".wandb"),
)
EMPTY_TARGET = "name a run, a run folder (.../run=X) or a log file"


def register(app: typer.Typer) -> None:
    app.command("alerts")(alerts)
    app.command("watch")(watch)
    app.command("report")(report)


@dataclass
class Target:
    """One run to analyse: its series, and the store it lives in (None for a raw log file)."""

    series: RunSeries
    root: Path | None
    run: str
    source: str


def resolve(
    target: str, default_root: Path, options: LogOptions | None = None, *, store_only: bool = False
) -> list[Target]:
    """A store run by name, a run folder ``.../run=X``, or a raw log file / folder (via ``load_log``; ``options`` as
    ``import --map / --vocab-size / --reward-max``: for log files only); ``store_only``: a run name, whatever the
    current folder holds. Errors say what is true: no such file, a broken or looping link, an unknown run (listing
    the runs that exist); :class:`~entropy_watch.errors.NoEntropySeries` for a run that logged no entropy; none for
    the store's catalog placeholder ``run=.catalog`` (no run: ``alerts ew_runs/run=*`` names it)."""
    from entropy_watch.analysis import RunSeries
    from entropy_watch.errors import EntropyWatchError, InvalidRunName, RunNotFound
    from entropy_watch.store import Store, read_steady
    from entropy_watch.store.query import run_names

    if not target.strip():  # `alerts "$RUN"` with RUN unset read the current folder as a log folder
        raise EntropyWatchError(f"{target!r} names nothing; {EMPTY_TARGET}")
    p = Path(target).expanduser()
    if not store_only and _lexists(p):
        if not p.exists():
            raise EntropyWatchError(_broken_link(p))
        if p.is_dir() and p.name.startswith("run="):
            from entropy_watch.store.catalog import PLACEHOLDER_RUN_DIR

            if p.name == PLACEHOLDER_RUN_DIR:  # what `compact` leaves beside the runs (a glob `run=*` names it)
                return []
            root, run = p.parent, p.name[len("run=") :]
            _file_only(target, options)
            return [Target(RunSeries.from_reader(Store(root), run), root, run, str(p))]
        from entropy_watch.importers.loader import LogOptions

        runs = (options or LogOptions()).load(p)
        return [Target(RunSeries.from_imported(r), None, r.name, str(p)) for r in runs]
    if not store_only and _looks_like_path(target):
        raise EntropyWatchError(f"{target}: no such file or directory")
    try:  # one version of the run, should `import --replace` swap it meanwhile
        series = read_steady(default_root, target, lambda store: RunSeries.from_reader(store, target))
    except RunNotFound as e:
        hint = "" if run_names(default_root) else f"; {EMPTY_STORE_HINT}"
        raise RunNotFound(f"{e}; no file or folder of that name either{hint}") from None
    except InvalidRunName as e:
        raise InvalidRunName(f"{target!r} is no file or folder, nor a run name: {e}") from None
    _file_only(target, options)
    return [Target(series, default_root, target, f"{default_root}/run={target}")]


def _looks_like_path(target: str) -> bool:
    """A target that is no file or folder but reads as a path (a separator, a log file's suffix): a missing file,
    not a run name."""
    return os.sep in target or "/" in target or target.lower().endswith(LOG_SUFFIXES)


def _lexists(p: Path) -> bool:
    """Whether anything (a dangling link too) is at ``p``; False for a name no file system holds (too long)."""
    try:
        p.lstat()
    except OSError:
        return False
    return True


def _broken_link(p: Path) -> str:
    """What is wrong with a symbolic link that leads nowhere: a loop, or the missing file it points to."""
    try:
        p.resolve(strict=True)
    except RuntimeError:  # Python < 3.13 reports a loop this way
        return f"{p}: symbolic link loop"
    except OSError as e:
        import errno

        if e.errno == errno.ELOOP:
            return f"{p}: symbolic link loop"
    try:
        return f"{p}: broken symbolic link to {os.readlink(p)} (which does not exist)"
    except OSError:
        return f"{p}: broken symbolic link"


def _file_only(target: str, options: LogOptions | None) -> None:
    """Refuse the log-file options for a stored run, whose columns are named and whose run.json holds what it knows
    (a usage error: the option does not apply to this target)."""
    given = options.given() if options is not None else []
    if "--map" in given:
        raise typer.BadParameter(f"--map applies to log files; {target} is a run in a store (its columns are named)")
    if given:
        raise typer.BadParameter(
            f"{given[0]} applies to log files; {target} is a run in a store (give it when importing: "
            f"import {given[0]} ... --replace; or, recording it, to Watch/attach as "
            f"{given[0].lstrip('-').replace('-', '_')}=...)"
        )


def _fail_on(value: str | None) -> frozenset[str] | None:
    """``--fail-on collapse,explosion`` -> the alert kinds that set the exit status (None: every kind)."""
    if value is None:
        return None
    from entropy_watch.analysis import KINDS

    kinds = frozenset(k.strip() for k in value.split(",") if k.strip())
    unknown = sorted(kinds - set(KINDS))
    if unknown or not kinds:
        raise typer.BadParameter(
            f"unknown alert kind {', '.join(map(repr, unknown)) or repr(value)}; use some of: {', '.join(KINDS)}",
            param_hint="--fail-on",
        )
    return kinds


def _severity(value: str) -> str:
    """``--min-severity`` check: a usage error (exit 2) naming the choices."""
    from entropy_watch.analysis import SEVERITIES

    if value not in SEVERITIES:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(SEVERITIES)}", param_hint="--min-severity")
    return value


def _progress_analyze(series: RunSeries, show: bool) -> AnalysisResult:
    from entropy_watch.analysis import analyze

    if not show or len(series) < LONG_RUN or not sys.stderr.isatty():
        return analyze(series)
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(escape(f"analysing {printable(series.name)}"), total=None)  # descriptions are markup

        def cb(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return analyze(series, progress=cb)


def _write_alerts(root: Path, run: str, new: list[Alert]) -> int:
    """Append alerts not already stored for ``run`` (by :attr:`Alert.key`); returns how many. One writer at a time per
    run (:func:`_alerts_lock`): two cron jobs' ``alerts --write`` (or one beside ``watch --write``) both read no
    stored alerts, and each stored every alert again."""
    from entropy_watch.analysis.alert import alert_key, rows
    from entropy_watch.store import RunWriter, Store

    with _alerts_lock(root, run):
        old = Store(root).table(run, "alerts")
        seen = set()
        if old.num_rows:
            cols = [old.column(c).to_pylist() for c in ("step", "detector", "kind", "severity")]
            seen = {alert_key(*row) for row in zip(*cols, strict=True)}
        fresh = [a for a in new if a.key not in seen]
        if fresh:
            w = RunWriter(root, run, heartbeat=False)  # never flip a finished run back to 'running'
            w.write("alerts", rows(fresh))  # published (visible to the next writer) before the lock is let go
    return len(fresh)


def _store_alerts(root: Path, run: str, new: list[Alert]) -> str | None:
    """:func:`_write_alerts`; None when stored, else why not, in one line (the alerts were printed before: none is
    lost). A store this user may not write (a shared store, a read-only mount) says so, and how to only list them."""
    try:
        _write_alerts(root, run, new)
    except OSError as e:
        reason = _UNWRITABLE.get(e.errno or 0)
        if reason is None:
            return one_line(e)
        where = f" ({e.filename})" if e.filename else ""
        return f"{reason}{where}; run without --write to only list them"
    except Exception as e:  # noqa: BLE001 - any other failure: its one line (internal errors named so)
        return error_line(e).partition(": ")[2]
    return None


_UNWRITABLE = {
    errno.EROFS: "the store is on a read-only filesystem",
    errno.EACCES: "this user may not write the store",
    errno.EPERM: "this user may not write the store",
}


@contextmanager
def _alerts_lock(root: Path, run: str) -> Iterator[None]:
    """An exclusive advisory lock on ``run=RUN/.alerts.lock`` for the block, across processes (:func:`~entropy_watch
    .store.atomic.flock`, as the writer's ``.run.json.lock``); none on an object store (its readers keep one row per
    alert instead) or without ``fcntl``."""
    folder = run_dir(root, run)
    if not isinstance(folder, Path):
        yield
        return
    with flock(folder / ".alerts.lock"):
        yield


def _filtered(since: int | None, min_severity: str) -> str:
    """What the listing's filters left out, for "no alerts ...": "" when none is set."""
    parts = [f"at or after step {since}"] if since is not None else []
    if min_severity != "info":
        parts.append(f"at {min_severity} or above")
    return " ".join(parts)


def _print_table(
    run: str, source: str, shown: list[Alert], notes: list[str], verdict: Verdict, filtered: str = ""
) -> None:
    """The verdict's headline, then its alerts (in the verdict's order: most severe first; those of an episode the
    verdict says cleared marked so) and notes. ``filtered``: what ``--since``/``--min-severity`` kept, if set."""
    from rich.table import Table

    out = console()
    out.print(text(f"{run}: ", "bold") + text(verdict.headline, HEALTH_STYLE.get(verdict.health)))
    if verdict.reference.note:
        out.print(text(f"H_ref: {verdict.reference.note}", "dim"))
    if not shown:
        none = "no alerts" + (f" {filtered}" if filtered else "")
        out.print(text(run, "green") + text(f": {none}" + (f" ({'; '.join(notes)})" if notes else "")))
        return
    stand = {a.key for a in verdict.standing_alerts}
    table = Table(show_lines=False, expand=False)
    for col in ("step", "severity", "kind", "detector", "message"):
        table.add_column(col, overflow="fold")
    for a in shown:
        sev = text(a.severity, SEVERITY_STYLE[a.severity]) if a.key in stand else text(f"{a.severity}, cleared", "dim")
        table.add_row(str(a.step), sev, text(a.kind), text(a.detector), text(a.message))
    print_table(table, f"{run}  ({source})", out)
    for n in notes:
        out.print(text(f"note: {n}", "dim"))


def alerts(
    ctx: typer.Context,
    targets: Annotated[
        list[str] | None,
        typer.Argument(help="Store run names, run folders (.../run=X) or log files (default: every run in the store)."),
    ] = None,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    since: int | None = typer.Option(None, "--since", help="Only alerts at or after this step."),
    min_severity: str = typer.Option("info", "--min-severity", callback=_severity, help="info, warning or critical."),
    write: bool = typer.Option(False, "--write/--no-write", help="Store new alerts in the run's alerts table."),
    maps: LogMap = None,
    fail_on: Annotated[
        str | None,
        typer.Option(
            "--fail-on",
            help="Comma-separated alert kinds that set the exit status, e.g. collapse,explosion (others are still "
            "listed but exit 0). Default: every kind.",
        ),
    ] = None,
    vocab_size: LogVocab = None,
    reward_max: LogRewardMax = None,
) -> None:
    """Analyse runs and list their alerts. Exit status: 0 clean, 1 warning, 2 critical, 3 error."""
    from entropy_watch.analysis.policy import filter_alerts
    from entropy_watch.errors import EntropyWatchError, NoEntropySeries
    from entropy_watch.store import quarantine

    st = state(ctx)
    options = log_options(maps, vocab_size, reward_max)
    gate = _fail_on(fail_on)
    store_only = not targets
    if not targets:  # a cron job over the store: every run in it, as `watch` follows them
        try:
            targets = _store_runs(st.root(existing=True), as_json)
        except EntropyWatchError as e:  # a mistyped --store is an error (exit 3), never "no runs" (exit 0)
            typer.echo(error_line(e), err=True)
            raise typer.Exit(EXIT_ERROR) from None
    worst, errors = 0, 0
    out: list[dict[str, Any]] = []
    for target in targets:
        source = target
        skipped_before = quarantine.found()
        try:
            for t in resolve(target, st.root(), options, store_only=store_only):
                source = t.source
                res = _progress_analyze(t.series, show=not as_json)
                v = res.verdict
                assert v is not None
                shown = filter_alerts(list(v.alerts), since=since, min_severity=min_severity)
                # the exit status is the verdict's: an episode it says cleared is listed, not counted (rasbt 7_6
                # read "info cliff ... the warning explosion from step 462 cleared at step 499" and exited 2 on a
                # critical explosion at step 168)
                stand = {a.key for a in v.standing_alerts}
                worst = max([worst, *(a.rank for a in shown if a.key in stand and (gate is None or a.kind in gate))])
                if as_json:
                    listed_ = [{**a.to_dict(), "standing": a.key in stand} for a in shown]
                    entry = {"run": t.run, "source": t.source, "alerts": listed_}
                    out.append({**entry, "notes": res.notes, "verdict": v.to_dict()})
                else:
                    _print_table(t.run, t.source, shown, res.notes, v, _filtered(since, min_severity))
                # stored after they are listed: a store this user may not write loses none of them (one error line)
                if write and t.root is not None and (why := _store_alerts(t.root, t.run, res.alerts)) is not None:
                    errors += 1
                    line = printable(f"error: {t.run}: the alerts listed were not stored: {why}")
                    typer.echo(line, err=True)
                    if as_json:
                        out.append({"run": t.run, "source": t.source, "error": line})
        except typer.BadParameter:  # an option that does not apply to this target: a usage mistake (exit 2)
            raise
        except NoEntropySeries as e:
            note = f"nothing to analyse; {e}"
            if as_json:  # named as a run with entropy is: the run's name, its folder the source
                run_, source = _run_named(target, source, st.root())
                out.append({"run": run_, "source": source, "alerts": [], "notes": [note], "verdict": None})
            else:
                console().print(text(f"{target}: {note}"))
        except Exception as e:  # noqa: BLE001 - any failure on one target: one line naming it, exit 3, go on
            if st.debug:
                raise
            errors += 1
            typer.echo(error_line(e, where=source), err=True)
            if as_json:
                out.append({"run": None, "source": source, "error": error_line(e, where=source)})
        # A data file the store could not read was left out of this target's analysis (quarantine.py): the verdict
        # above covers the rest of the run, but a gate must not pass on data it did not see.
        for msg in _left_out(skipped_before, source):
            errors += 1
            typer.echo(msg, err=True)
            if as_json:
                out.append({"run": None, "source": source, "error": msg})
    if as_json:
        try:
            echo_json(out)
        except OSError as e:  # stdout could not take the listing (a full disk): an error, never exit 1 ("warning")
            if st.debug:
                raise
            typer.echo(error_line(e), err=True)
            raise typer.Exit(EXIT_ERROR) from None
    raise typer.Exit(EXIT_ERROR if errors else {0: EXIT_CLEAN, 1: EXIT_WARNING, 2: EXIT_CRITICAL}[worst])


def _run_named(target: str, source: str, root: Path) -> tuple[str, str]:
    """``(run, source)`` of a stored run that had nothing to analyse, as :func:`resolve` names a run it read: a run
    folder ``.../run=X`` is run ``X`` (its path the source), a run name is its folder in the store."""
    p = Path(target).expanduser()
    if p.name.startswith("run=") and p.is_dir():
        return p.name[len("run=") :], str(p)
    if source == target and not _lexists(p):
        return target, f"{root}/run={target}"
    return target, source


def _left_out(before: dict[str, str], source: str) -> list[str]:
    """One error line per data file found unreadable since ``before`` (``quarantine.found()``): what `alerts` and
    `report` say about data they did not see (a gate, or a report, must not pass on it silently)."""
    from entropy_watch.store import quarantine

    new = [(path, why) for path, why in quarantine.found().items() if path not in before]
    return [
        printable(f"error: {p}: unreadable data file ({why}) left out of the analysis of {source}") for p, why in new
    ]


def _line(run: str, a: Alert) -> str:
    return printable(f"[{run}] step {a.step} {a.severity.upper()} {a.kind} ({a.detector}): {a.message}")


def _store_runs(root: Path, as_json: bool) -> list[str]:
    """Every run in the store at ``root``; none says so (not an error: an empty store has nothing to alert on)."""
    from entropy_watch.store.query import run_names

    names = run_names(root)
    if not names and not as_json:
        print_empty_store(root)
    return names


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
            reason = f"run {run!r} is not in the store yet (runs: {listed(stored)})"
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
    relay = _relay(notify, min_severity, app_url)
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
        typer.echo(printable(f"error: run {r!r} not found in store {root} (runs: {listed(stored)})"), err=True)
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


def _relay(specs: list[str] | None, min_severity: str, app_url: str | None) -> Any:
    """The notification relay for ``watch --notify`` (None without ``--notify``); a bad spec is a usage error that
    never echoes the URL. A message not delivered is one line on stderr, the first time for each destination."""
    if not specs:
        return None
    from entropy_watch.notify import Notifier, NotifyConfigError, NotifyPolicy
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
    return MonitorRelay(notifier)


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


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def report(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="A store run, a run folder (.../run=X) or a log file.")],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="HTML file to write (replaces an earlier report, never another file)."),
    ] = Path("report.html"),
    run: str | None = typer.Option(None, "--run", help="Which run, when the log file holds several."),
    maps: LogMap = None,
    vocab_size: LogVocab = None,
    reward_max: LogRewardMax = None,
) -> None:
    """Write one self-contained HTML report: entropy with forecast and ETA, reward, token heatmap, alerts."""
    from entropy_watch.errors import EntropyWatchError, NoEntropySeries
    from entropy_watch.report import build_report, check_report_dest
    from entropy_watch.store import quarantine

    output = output.expanduser()  # `--output=~/r.html` reaches us unexpanded (as --store does): never a folder "~"
    check_report_dest(output)  # before the analysis: a user's other file at --output is never replaced
    before = quarantine.found()
    try:
        with quarantine.quiet():  # each unreadable data file is named once, below, with what became of it
            found = resolve(target, state(ctx).root(), log_options(maps, vocab_size, reward_max))
    except NoEntropySeries as e:  # "nothing to analyse", not an error: exit 0 as `alerts` and `watch` do
        if not (left := _left_out(before, target)):
            console().print(text(f"{target}: nothing to analyse; {e}; no report written"))
            return
        typer.echo("\n".join(left), err=True)  # every file of the run unreadable (damaged, private): never "nothing"
        why = f"{_plural(len(left), 'data file')} could not be read (above), and the rest holds no entropy series"
        raise EntropyWatchError(f"{target}: no report written: {why}") from None
    if run is not None:
        found = [t for t in found if t.run == run]
        if not found:
            raise EntropyWatchError(f"no run named {run!r} in {target}")
    if not found:
        raise EntropyWatchError(f"{target} holds no run")
    if len(found) > 1:
        names = ", ".join(t.run for t in found)
        raise EntropyWatchError(f"{target} holds {len(found)} runs ({names}); pick one with --run")
    t = found[0]
    with quarantine.quiet():
        res = _progress_analyze(t.series, show=True)
        path = build_report(t.series, res, output, source=t.source)
    n = len(res.alerts)
    echo(printable(f"wrote {path} ({n} alert{'' if n == 1 else 's'})"))
    if left := _left_out(before, t.source):  # a report over part of the run: said, and exit 1 (`alerts`: 3)
        typer.echo("\n".join(left), err=True)
        raise typer.Exit(1)
