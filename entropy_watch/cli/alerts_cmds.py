"""Analysis commands: ``alerts`` (CI/cron-friendly exit status), ``watch`` (follow live runs), ``report`` (HTML).

Exit status of ``alerts``: 0 no warning, 1 at least one warning, 2 at least one critical alert, 3 an error (bad
path, unknown run, unreadable log: one line on stderr). Click's own usage errors (an unknown option) also exit 2,
with a usage message on stderr. ``watch`` and ``report`` exit 0, or 1 on errors like every other command.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from entropy_watch.cli.common import echo_json, fail, state

if TYPE_CHECKING:
    from entropy_watch.analysis import Alert, AnalysisResult, RunSeries

EXIT_CLEAN, EXIT_WARNING, EXIT_CRITICAL, EXIT_ERROR = 0, 1, 2, 3
SEVERITY_STYLE = {"info": "cyan", "warning": "yellow", "critical": "bold red"}
LONG_RUN = 2000  # versions above which a progress bar is shown on a terminal


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


def resolve(target: str, default_root: Path) -> list[Target]:
    """A store run by name, a run folder ``.../run=X``, or a raw log file / folder (via ``load_log``)."""
    from entropy_watch.analysis import RunSeries
    from entropy_watch.errors import RunNotFound
    from entropy_watch.store import Store

    p = Path(target).expanduser()
    if p.is_dir() and p.name.startswith("run="):
        root, run = p.parent, p.name[len("run=") :]
        return [Target(RunSeries.from_store(Store(root), run), root, run, str(p))]
    if p.exists():
        from entropy_watch.importers import load_log

        return [Target(RunSeries.from_imported(r), None, r.name, str(p)) for r in load_log(p)]
    store = Store(default_root)
    try:
        series = RunSeries.from_store(store, target)
    except RunNotFound:
        raise RunNotFound(f"{target!r} is neither a file, a run folder nor a run in the store {default_root}") from None
    return [Target(series, default_root, target, f"{default_root}/run={target}")]


def _progress_analyze(series: RunSeries, show: bool) -> AnalysisResult:
    from entropy_watch.analysis import analyze

    if not show or len(series) < LONG_RUN or not sys.stderr.isatty():
        return analyze(series)
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(f"analysing {series.name}", total=None)

        def cb(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return analyze(series, progress=cb)


def _write_alerts(root: Path, run: str, new: list[Alert]) -> int:
    """Append alerts not already stored for ``run`` (same step, detector, kind, severity); returns how many."""
    from entropy_watch.analysis.alert import rows
    from entropy_watch.store import RunWriter, Store

    old = Store(root).table(run, "alerts")
    seen = set()
    if old.num_rows:
        cols = [old.column(c).to_pylist() for c in ("step", "detector", "kind", "severity")]
        seen = set(zip(*cols, strict=True))
    fresh = [a for a in new if (a.step, a.detector, a.kind, a.severity) not in seen]
    if fresh:
        w = RunWriter(root, run, heartbeat=False)  # never flip a finished run back to 'running'
        w.write("alerts", rows(fresh))
    return len(fresh)


def _print_table(run: str, source: str, shown: list[Alert], notes: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not shown:
        console.print(f"[green]{run}[/green]: no alerts" + (f" ({'; '.join(notes)})" if notes else ""))
        return
    table = Table(title=f"{run}  ({source})", show_lines=False, expand=False)
    for col in ("step", "severity", "kind", "detector", "message"):
        table.add_column(col, overflow="fold")
    for a in shown:
        sev = f"[{SEVERITY_STYLE[a.severity]}]{a.severity}[/]"
        table.add_row(str(a.step), sev, a.kind, a.detector, a.message)
    console.print(table)
    for n in notes:
        console.print(f"[dim]note: {n}[/dim]")


def alerts(
    ctx: typer.Context,
    targets: Annotated[list[str], typer.Argument(help="Store run names, run folders (.../run=X) or log files.")],
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    since: int | None = typer.Option(None, "--since", help="Only alerts at or after this step."),
    min_severity: str = typer.Option("info", "--min-severity", help="info, warning or critical."),
    write: bool = typer.Option(False, "--write/--no-write", help="Store new alerts in the run's alerts table."),
) -> None:
    """Analyse runs and list their alerts. Exit status: 0 clean, 1 warning, 2 critical, 3 error."""
    from entropy_watch.analysis import SEVERITIES
    from entropy_watch.analysis.policy import filter_alerts
    from entropy_watch.errors import EntropyWatchError

    st = state(ctx)
    if min_severity not in SEVERITIES:
        fail(f"--min-severity must be one of {', '.join(SEVERITIES)}, got {min_severity!r}", code=EXIT_ERROR)
    try:
        resolved = [t for target in targets for t in resolve(target, st.root())]
    except (EntropyWatchError, OSError, ValueError) as e:
        if st.debug:
            raise
        fail(e, code=EXIT_ERROR)
    worst = 0
    out: list[dict[str, Any]] = []
    for t in resolved:
        res = _progress_analyze(t.series, show=not as_json)
        shown = filter_alerts(res.alerts, since=since, min_severity=min_severity)
        if write and t.root is not None:
            _write_alerts(t.root, t.run, res.alerts)
        worst = max([worst, *(a.rank for a in shown)])
        if as_json:
            out.append({"run": t.run, "source": t.source, "alerts": [a.to_dict() for a in shown], "notes": res.notes})
        else:
            _print_table(t.run, t.source, shown, res.notes)
    if as_json:
        echo_json(out)
    raise typer.Exit({0: EXIT_CLEAN, 1: EXIT_WARNING, 2: EXIT_CRITICAL}[worst])


def _line(run: str, a: Alert) -> str:
    return f"[{run}] step {a.step} {a.severity.upper()} {a.kind} ({a.detector}): {a.message}"


def watch(
    ctx: typer.Context,
    runs: Annotated[
        list[str] | None, typer.Argument(help="Runs to follow (default: every run in the store, new ones too).")
    ] = None,
    interval: float = typer.Option(10.0, "--interval", help="Seconds between polls."),
    iterations: int | None = typer.Option(None, "--iterations", help="Stop after this many polls (default: never)."),
    once: bool = typer.Option(False, "--once", help="Poll once and exit (same as --iterations 1)."),
    min_severity: str = typer.Option("warning", "--min-severity", help="info, warning or critical."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per alert."),
    write: bool = typer.Option(False, "--write/--no-write", help="Store new alerts in each run's alerts table."),
) -> None:
    """Follow live runs and print new alerts as they appear (Ctrl-C stops)."""
    import json

    from entropy_watch.analysis import SEVERITIES, Analyzer, RunSeries
    from entropy_watch.analysis.policy import filter_alerts
    from entropy_watch.errors import EntropyWatchError
    from entropy_watch.store import Store

    if min_severity not in SEVERITIES:
        fail(f"--min-severity must be one of {', '.join(SEVERITIES)}, got {min_severity!r}")
    if interval <= 0:
        fail("--interval must be > 0")
    root = state(ctx).root()
    store = Store(root)
    limit = 1 if once else iterations
    analyzers: dict[str, Analyzer] = {}
    waiting: set[str] = set()
    n = 0
    try:
        while limit is None or n < limit:
            names = list(runs) if runs else [r.name for r in store.runs()]
            for run in names:
                try:
                    series = RunSeries.from_store(store, run)
                except EntropyWatchError as e:
                    if run not in waiting:
                        typer.echo(f"[{run}] waiting: {e}", err=True)
                        waiting.add(run)
                    continue
                waiting.discard(run)
                new = analyzers.setdefault(run, Analyzer()).update(series)
                if write and new:
                    _write_alerts(root, run, new)
                for a in filter_alerts(new, min_severity=min_severity):
                    typer.echo(json.dumps({"run": run, **a.to_dict()}) if as_json else _line(run, a))
            n += 1
            if limit is None or n < limit:
                time.sleep(interval)
    except KeyboardInterrupt:
        typer.echo("stopped", err=True)


def report(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="A store run, a run folder (.../run=X) or a log file.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write.")] = Path("report.html"),
    run: str | None = typer.Option(None, "--run", help="Which run, when the log file holds several."),
) -> None:
    """Write one self-contained HTML report: entropy with forecast and ETA, reward, token heatmap, alerts."""
    from entropy_watch.errors import EntropyWatchError
    from entropy_watch.report import build_report

    found = resolve(target, state(ctx).root())
    if run is not None:
        found = [t for t in found if t.run == run]
        if not found:
            raise EntropyWatchError(f"no run named {run!r} in {target}")
    if len(found) > 1:
        names = ", ".join(t.run for t in found)
        raise EntropyWatchError(f"{target} holds {len(found)} runs ({names}); pick one with --run")
    t = found[0]
    res = _progress_analyze(t.series, show=True)
    path = build_report(t.series, res, output, source=t.source)
    typer.echo(f"wrote {path} ({len(res.alerts)} alerts)")
