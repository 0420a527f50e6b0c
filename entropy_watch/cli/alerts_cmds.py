"""Analysis commands: ``alerts`` (CI/cron-friendly exit status) and ``report`` (HTML); ``watch`` is ``watch_cmd.py``.

``alerts`` without targets reads every run in the store (an empty store says so: nothing to alert on). Exit status of
``alerts``: 0 no warning, 1 at least one warning, 2 at least one critical alert among those that stand — the verdict's
(an episode its headline says cleared is listed, marked "cleared", and not counted; ``--fail-on KINDS`` counts only
those kinds), 3 an error on any target (missing file, unknown run, unreadable log, a bug: one line on stderr naming the
file; the other targets are still analysed and printed). A run that logged no entropy is "nothing to analyse", not an
error. Usage mistakes (a missing argument, an unknown option, a bad option value) also exit 2, with typer's usage
message on stderr. ``report`` exits 0 (on a run that logged no entropy too: "nothing to analyse", no report written),
or 1 on errors like every other command (1 when a data file of the run is unreadable, each named on stderr as
``alerts`` names it, the report written from the rest); Ctrl-C exits 130, SIGTERM 143 (``boundary.py``).

``alerts --json`` prints a list: per run ``{run, source, alerts, notes, verdict}`` (``verdict`` null for a run with
nothing to analyse), per error ``{run: null, source, error}``; every entry has ``run`` and ``source``. The text
listing ends each run with what to do about the alerts that stand at warning or critical (their suggested actions,
as the verdict holds them: :mod:`entropy_watch.analysis.advice`).
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from entropy_watch.cli.common import (
    EMPTY_STORE_HINT,
    LogMap,
    LogRewardMax,
    LogVocab,
    console,
    echo,
    echo_json,
    error_line,
    log_options,
    one_line,
    print_empty_store,
    print_table,
    printable,
    state,
    text,
)
from entropy_watch.store.atomic import flock
from entropy_watch.store.layout import ALERTS_LOCK, run_dir

if TYPE_CHECKING:
    from entropy_watch.analysis import Alert, AnalysisResult, RunSeries, Verdict
    from entropy_watch.importers.loader import LogOptions

EXIT_CLEAN, EXIT_WARNING, EXIT_CRITICAL, EXIT_ERROR = 0, 1, 2, 3
SEVERITY_STYLE = {"info": "cyan", "warning": "yellow", "critical": "bold red"}
HEALTH_STYLE = {**SEVERITY_STYLE, "ok": "green", "too-short": "dim"}
LONG_RUN = 2000  # versions above which a progress bar is shown on a terminal
# A target that does not exist and ends like this is a missing file, not a run name.
LOG_SUFFIXES = (
    *(".csv", ".tsv", ".json", ".jsonl", ".log", ".txt", ".parquet"),
    *(".gz", ".bz2", ".xz", ".db", ".sqlite", ".wandb"),
)
EMPTY_TARGET = "name a run, a run folder (.../run=X) or a log file"


def register(app: typer.Typer) -> None:
    app.command("alerts")(alerts)
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
    """Refuse the log-file options for a stored run, whose columns are named and whose _run.json holds what it knows
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
    with flock(folder / ALERTS_LOCK):
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
    out.print(_headline(run, verdict))
    if verdict.reference.note:
        out.print(text(f"H_ref: {verdict.reference.note}", "dim"))
    if not shown:  # the notes on their own lines, as below: inline, a caution read as part of a green "no alerts"
        out.print(text(run, "green") + text(": no alerts" + (f" {filtered}" if filtered else "")))
        for n in notes:
            out.print(text(f"note: {n}", "dim"))
        return
    stand = {a.key for a in verdict.standing_alerts}
    table = Table(show_lines=False, expand=False)
    for col in ("step", "severity", "kind", "detector", "message"):
        table.add_column(col, overflow="fold")
    for a in shown:
        sev = text(a.severity, SEVERITY_STYLE[a.severity]) if a.key in stand else text(f"{a.severity}, cleared", "dim")
        table.add_row(str(a.step), sev, text(a.kind), text(a.detector), text(a.message))
    print_table(table, f"{run}  ({source})", out)
    print_actions(shown, verdict, out)
    for n in notes:
        out.print(text(f"note: {n}", "dim"))


def _headline(run: str, verdict: Verdict) -> Any:
    """``run: <the verdict's headline>``, styled by health: the first line of a run's listing, all of ``--brief``."""
    return text(f"{run}: ", "bold") + text(verdict.headline, HEALTH_STYLE.get(verdict.health))


def print_actions(alerts: Sequence[Alert], verdict: Verdict, out: Any) -> None:
    """What to do: for each kind among ``alerts`` (in the verdict's order, most severe first) its first alert that
    stands (``verdict.standing_alerts``) at warning or critical, with the suggested actions it holds, one per line:
    rendered as the analysis wrote them (:mod:`entropy_watch.analysis.advice`), never recomputed; data, not markup.
    Each line is soft-wrapped (a narrow terminal folds it; it is never cut into several lines)."""
    stand = {a.key for a in verdict.standing_alerts}
    said: set[str] = set()
    for a in alerts:
        if a.key not in stand or a.rank < 1 or a.kind in said or not a.actions:
            continue
        said.add(a.kind)
        out.print(text(f"what to do ({a.kind}, {a.severity} at step {a.step}):", "bold"), soft_wrap=True)
        for line in a.actions:
            out.print(text(f"  - {line}"), soft_wrap=True)


def alerts(
    ctx: typer.Context,
    targets: Annotated[
        list[str] | None,
        typer.Argument(help="Store run names, run folders (.../run=X) or log files (default: every run in the store)."),
    ] = None,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    brief: bool = typer.Option(
        False, "--brief", help="One line per run: its verdict (health, kind, what the entropy does); same exit status."
    ),
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
    if brief and as_json:  # --json holds every verdict whole: --brief would be silently ignored
        raise typer.BadParameter(
            "--brief prints one line per run; --json prints every verdict whole", param_hint="--brief"
        )
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
                elif brief:
                    console().print(_headline(t.run, v))
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


def _store_runs(root: Path, as_json: bool) -> list[str]:
    """Every run in the store at ``root``; none says so (not an error: an empty store has nothing to alert on)."""
    from entropy_watch.store.query import run_names

    names = run_names(root)
    if not names and not as_json:
        print_empty_store(root)
    return names


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
