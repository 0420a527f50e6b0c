"""Store commands: ``ls``, ``show RUN``, ``sql QUERY``, ``compact``, ``export --duckdb FILE``, ``rm RUN...``."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import typer

from entropy_watch import metrics as M
from entropy_watch.cli.common import (
    console,
    echo,
    echo_json,
    error_line,
    fmt_value,
    is_input_error,
    print_empty_store,
    print_table,
    printable,
    state,
    text,
)
from entropy_watch.errors import EntropyWatchError, listed

# What `show` prints, in order: the canonical metrics a user reads first (those the run logged, only).
SHOW_METRICS: tuple[tuple[str, str], ...] = (
    ("entropy", M.ENTROPY_MEAN),
    ("entropy p10", M.ENTROPY_P10),
    ("entropy p50", M.ENTROPY_P50),
    ("entropy p90", M.ENTROPY_P90),
    ("low-entropy tokens", M.ENTROPY_FRAC_LOW),
    ("forking tokens", M.ENTROPY_FRAC_HIGH),
    ("sampled NLL", M.ENTROPY_SAMPLED_NLL),
    ("non-finite tokens", M.ENTROPY_NONFINITE_FRAC),
    ("clip low", M.CLIP_LOW_FRAC),
    ("clip high", M.CLIP_HIGH_FRAC),
    ("clipped (low + high)", M.CLIP_REGION_FRAC),  # the only clip fraction verl and OpenRLHF log
    ("on-policy", M.CLIP_ONPOLICY),
    ("adv mean", M.ADV_MEAN),
    ("adv std", M.ADV_STD),
    ("zero-std groups", M.ADV_FRAC_ZERO_GROUPS),
    ("cov(logp, A)", M.COV_LOGP_ADV),
    ("pg drive", M.COV_PG_DRIVE),
    ("log-ratio mean", M.RATIO_LOG_MEAN),
    ("KL to old policy", M.KL_OLD),
    ("KL to reference", M.KL_REF),
    ("reward", M.REWARD_MEAN),
    ("length", M.LENGTH_MEAN),
    # an entropy controller (the reference trainer, attach(..., control=...)): each is the value for the next step
    ("control: REPO zeta", M.CONTROL_ZETA),
    ("control: cap on |zeta|", M.CONTROL_ZETA_MAX),
    ("control: ADAPO eps_high", M.CONTROL_EPS_HIGH),
    ("control: cap on eps_high", M.CONTROL_EPS_MAX),
    ("control: entropy coef", M.CONTROL_ENTROPY_COEF),
    ("control: entropy seen", M.CONTROL_ENTROPY),
    ("control: target entropy", M.CONTROL_TARGET),
    ("control: band low", M.CONTROL_BAND_LOW),
    ("control: band high", M.CONTROL_BAND_HIGH),
    ("hook errors", M.HOOKS_ERRORS),
)


def register(app: typer.Typer) -> None:
    app.command("ls")(ls)
    app.command("show")(show)
    app.command("sql")(sql)
    app.command("compact")(compact)
    app.command("export")(export)
    app.command("rm")(rm)


def ls(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the runs in the store with their state, last step and latest entropy."""
    from entropy_watch.store import Store

    store = Store(state(ctx).root(existing=True))
    rows = []
    for info in store.runs():  # one pass over the runs' summaries; no query per run (issue 11, issue 15)
        latest = info.latest.get(M.ENTROPY_MEAN)
        rows.append(
            {
                "run": info.name,
                "state": info.state,
                "last_step": info.last_step,
                "entropy": latest[0] if latest else None,
                "framework": info.meta.get("framework"),
                "updated_at": info.updated_at,
            }
        )
    if as_json:
        echo_json(rows)
        return
    if not rows:
        print_empty_store(store.root)
        return
    from rich.table import Table

    table = Table()
    for col in ("run", "state", "last step", "entropy (nats)", "framework", "updated"):
        table.add_column(col, overflow="fold")  # a narrow terminal folds a run name: never "qwen2.5-7b-…"
    for r in rows:
        table.add_row(
            text(r["run"]),
            text(r["state"]),
            fmt_value(r["last_step"]),
            fmt_value(r["entropy"]),
            text(r["framework"] or ""),
            _ago(r["updated_at"]),
        )
    print_table(table, f"runs in {store.root}")


def show(
    ctx: typer.Context,
    run: str = typer.Argument(..., help="Run name."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a run's latest canonical metrics, readable at a glance."""
    from entropy_watch.analysis.changes import change_points
    from entropy_watch.store import Store, read_steady
    from entropy_watch.store.layout import validate_run_name

    validate_run_name(run)  # a name no store can hold says so first, in one line, store or not (as `alerts` does)

    def read(store: Store) -> tuple[Any, ...]:
        meta = store.run_meta(run)  # RunNotFound -> one-line error
        ends = store.ends(run, tuple(name for _, name in SHOW_METRICS))
        verdict = _verdict(store, run)
        # last, so that a live run's "last step" is never older than the metrics and verdict read before it
        info = store.run_info(run)  # this run only: cost independent of the other runs in the store
        return meta, info, ends, verdict, change_points(store.events(run)), store.scalar_names(run)

    # one version of the run, should `import --replace` swap it meanwhile
    meta, info, ends, verdict, changes, names = read_steady(state(ctx).root(existing=True), run, read)
    latest = {name: last for name, (_, last) in ends.items()}
    first = ends[M.ENTROPY_MEAN][0] if M.ENTROPY_MEAN in ends else None
    if as_json:
        echo_json(
            {
                "run": run,
                "state": info.state if info else None,
                "last_step": info.last_step if info else None,
                "metrics": latest,
                "entropy_first": first,
                "verdict": verdict.to_dict() if verdict is not None else None,
                "change_points": changes,
                "meta": meta,
            }
        )
        return
    from rich.table import Table

    state_txt = f"{info.state}, last step {fmt_value(info.last_step)}" if info else "unknown"
    table = Table(show_header=True)
    table.add_column("metric", overflow="fold")  # a narrow terminal folds a cell, never cuts a value to "0.…"
    table.add_column("latest", justify="right", overflow="fold")
    table.add_column("at step", justify="right", overflow="fold")
    for label, name in SHOW_METRICS:
        if name in latest:
            value, step = latest[name]
            if name == M.CLIP_ONPOLICY and value == 1.0 and M.CLIP_LOW_FRAC not in latest:  # no old log-probs
                label, value = "clip low/high", "N/A (on-policy)"
            table.add_row(
                text(label) + text(f" {name}", "dim"),
                value if isinstance(value, str) else fmt_value(value),
                fmt_value(step),
            )
    print_table(table, f"{run} ({state_txt}; framework {meta.get('framework') or 'unknown'})")
    if verdict is not None:
        _print_verdict(verdict)
        from entropy_watch.cli.alerts_cmds import print_actions

        print_actions(verdict.alerts, verdict, console())
    _print_changes(changes)
    if not latest:
        others = names
        if others:  # scalars of the user's own names only
            console().print(text(f"no canonical metrics; {len(others)} other scalar(s): {listed(others, 8)}"))
        else:
            echo("no scalars recorded yet")


def _verdict(store: Any, run: str) -> Any:
    """The run's verdict (``entropy_watch.analysis``), or None when it logged no entropy yet."""
    from entropy_watch.analysis import RunSeries, analyze
    from entropy_watch.errors import NoEntropySeries

    try:
        return analyze(RunSeries.from_reader(store, run)).verdict
    except NoEntropySeries:
        return None


def _print_changes(changes: list[dict[str, Any]]) -> None:
    """The known change points under the verdict, each with what the analysis does there (data, not markup)."""
    from entropy_watch.analysis.changes import describe

    for line in describe(changes):
        console().print(text(f"change point {line}" if line.startswith("step") else line, "dim"))


def _print_verdict(v: Any) -> None:
    """The verdict as `show` prints it: the headline, H_ref and how it was taken, the forecast (data, not markup)."""
    from entropy_watch.cli.alerts_cmds import HEALTH_STYLE

    out = console()
    out.print(text("verdict: ", "bold") + text(v.headline, HEALTH_STYLE.get(v.health)))
    ref = v.reference
    if ref.value is not None:
        one = ref.first_step == ref.last_step
        span = f"step {ref.first_step}" if one else f"steps {ref.first_step}–{ref.last_step}"
        line = f"H_ref {fmt_value(ref.value)} nats: {ref.method} ({span})"
        out.print(text(line, "dim"))
        if ref.note:
            out.print(text(f"  {ref.note}", "dim"))
    if v.floor is not None:
        extra = f"; ln V {v.ln_v:.2f}" if v.ln_v is not None else ""
        out.print(text(f"floor {fmt_value(v.floor)} nats{extra}", "dim"))
    for note in v.notes:
        out.print(text(f"note: {note}", "dim"))


def sql(
    ctx: typer.Context,
    query: str = typer.Argument(
        ...,
        help="A read-only SQL query over the views scalars, hist, tokens, alerts, events and runs "
        "('SHOW TABLES' lists their columns; e.g. \"SELECT step, value FROM scalars WHERE name = 'entropy/mean'\").",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON rows."),
    limit: int = typer.Option(200, min=1, max=2**62, help="Print at most this many rows."),
) -> None:
    """Run a read-only SQL query on the store (DuckDB, in memory; never locks the store)."""
    from entropy_watch.store import Store
    from entropy_watch.store.query import check_read_only

    check_read_only(query)
    try:
        table = Store(state(ctx).root(existing=True)).sql(query, limit=limit + 1)  # one more: are there more?
    except Exception as e:
        if not is_input_error(e) or isinstance(e, EntropyWatchError):
            raise
        raise EntropyWatchError(_sql_error(e)) from e
    rows = table.slice(0, limit).to_pylist()
    more = f"(more than {limit} rows: the first {limit} shown; raise --limit for more)"
    if as_json:
        echo_json(rows)
        if table.num_rows > limit:  # a script reading the JSON is told too, on stderr
            typer.echo(more, err=True)
        return
    from rich.table import Table

    out = Table(show_header=True)
    for name in table.column_names:
        out.add_column(text(name), overflow="fold")  # values folded to the width, never cut to "0.…"
    for r in rows:
        out.add_row(*(_sql_cell(v) for v in r.values()))
    console().print(out)
    if table.num_rows > limit:
        echo(more)


def _sql_cell(v: Any) -> Any:
    """A query result cell as data: NULL and NaN told apart (``show``'s "N/A" read as the text 'N/A', and NULL as
    Python's ``None``), numbers at 4 significant digits, text literally."""
    if v is None:
        return text("NULL", "dim")
    if isinstance(v, float) and v != v:
        return "NaN"
    return fmt_value(v) if isinstance(v, float | int) and not isinstance(v, bool) else text(v)


def compact(
    ctx: typer.Context,
    run: list[str] = typer.Argument(None, help="Runs to compact (default: all)."),
    final: bool = typer.Option(False, "--final", help="Merge everything into one file per table and rank."),
    min_age: float = typer.Option(60.0, min=0, help="Only merge segments older than this many seconds."),
) -> None:
    """Merge small segment files into larger part files (safe while runs are live) and refresh _catalog.duckdb.

    Exit status 0 once the merge is done, even if the catalog or the _runs.parquet listing cache could not be written
    (full or read-only disk: one warning line on stderr; the previous files are kept, never read wrongly; run again),
    and even if a data file could not be read (truncated, overwritten by another program): it is left where it is,
    unmerged, and named in one warning line on stderr; the rest is merged. 1 when a merge itself failed (a full
    disk: nothing of that folder is lost).
    """
    from entropy_watch.errors import RunNotFound
    from entropy_watch.store import Store, quarantine, write_catalog
    from entropy_watch.store import compact as do_compact
    from entropy_watch.store.catalog import CatalogBlocked, CatalogNotWritten, refresh_catalog

    store = Store(state(ctx).root(existing=True))
    known = quarantine.found()
    with quarantine.quiet():  # each unreadable file is named once below, with what compact did about it
        names = run or [i.name for i in store.runs()]
        for name in names:
            try:
                store.run_meta(name)  # RunNotFound before touching anything
            except RunNotFound:
                if run:
                    raise
                continue  # deleted (`entropy-watch rm`) since the listing
            report = do_compact(store.root, name, min_age_s=min_age, final=final)
            words = _compaction_words(report)
            if left := len(_unreadable_in(store.root, name, known)):
                words += f"; {left} unreadable file{'s' if left != 1 else ''} left unmerged (see below)"
            echo(printable(f"{name}: {words}"))
        blocked = None
        try:
            path = refresh_catalog(store.root, names) if run else write_catalog(store.root)  # RUN: its files only
        except CatalogBlocked as exc:  # a view over an unreadable file would fail: said with that file, below
            blocked = exc
        except CatalogNotWritten as exc:  # the merge is the job, and it is done: a cache not refreshed is a warning
            typer.echo(printable(f"warning: {exc}"), err=True)
            return
    found = {bad: why for bad, why in quarantine.found().items() if bad not in known}
    for bad, why in found.items():
        typer.echo(printable(f"warning: {_unreadable_words(bad, why, blocked is not None)}"), err=True)
    if blocked is not None and str(blocked.path) not in found:  # quarantined before this command: say it here
        typer.echo(printable(f"warning: {blocked}"), err=True)
    if blocked is None:
        echo(printable(f"catalog views refreshed: {path}"))


def _unreadable_in(root: Any, run: str, known: dict[str, str]) -> list[str]:
    """The files of ``run`` found unreadable by this command (not in ``known``, those found before it)."""
    from entropy_watch.store import quarantine
    from entropy_watch.store.layout import run_dir

    prefix = f"{run_dir(root, run)}/"
    return [p for p in quarantine.found() if p.startswith(prefix) and p not in known]


def _unreadable_words(path: str, why: str, blocked: bool) -> str:
    """One line for an unreadable data file compact met: what happened to it and what to do."""
    catalog = ", and _catalog.duckdb was not refreshed (a view over it would fail)" if blocked else ""
    return (
        f"unreadable data file {path} ({why}): left where it is, not merged{catalog}; its rows are left out of "
        "every read. Move it out of the store (to inspect it) or delete it, then run `entropy-watch compact` again"
    )


def export(
    ctx: typer.Context,
    duckdb_file: Path = typer.Option(
        ...,
        "--duckdb",
        "--output",
        "-o",  # as `report -o`
        help="Write a self-contained DuckDB database here (replaces an earlier export, never another file).",
    ),
    run: list[str] = typer.Option(None, "--run", help="Only these runs (repeatable)."),
) -> None:
    """Export the store (or some runs) into one self-contained DuckDB file."""
    from entropy_watch.store import Store, export_duckdb

    store = Store(state(ctx).root(existing=True))
    for name in run or []:
        store.run_meta(name)
    path = export_duckdb(store.root, duckdb_file, runs=run or None)
    echo(printable(f"wrote {path}"))


def rm(
    ctx: typer.Context,
    run: list[str] = typer.Argument(..., help="Runs to delete."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask (required when stdin is not a terminal)."),
    force: bool = typer.Option(False, "--force", help="Delete a run even while its writer is alive."),
) -> None:
    """Delete runs from the store: every reader (ls, show, sql, the catalog, the app) stops seeing each at once.

    Refuses a run whose writer is alive (state running) unless --force. Asks first on a terminal; without one, pass
    --yes (else exit 2). Nothing is deleted unless every named run exists and may go. A run that can no longer go when
    its turn comes (its writer started meanwhile, another rm took it, objects kept appearing on an object store) is
    said on one line and the rest are still deleted; exit 1. An rm killed mid-way leaves a store every command reads
    (a hidden leftover folder the next rm deletes).
    """
    from entropy_watch.store import Store
    from entropy_watch.store.layout import validate_run_name
    from entropy_watch.store.remove import check_removable, clean_leftovers, remove_run

    names = list(dict.fromkeys(validate_run_name(r) for r in run))  # a bad name says so first, store or not
    store = Store(state(ctx).root(existing=True))
    for name in names:  # all checked before any is deleted
        check_removable(store, name, force=force)  # RunNotFound, RunIsLive -> one-line error
    if not yes:
        if not (sys.stdin is not None and sys.stdin.isatty()):
            reason = "required when stdin is not a terminal (rm cannot ask whether to delete)"
            raise typer.BadParameter(reason, param_hint="--yes")  # a usage mistake: exit 2, nothing deleted
        runs = f"{len(names)} run{'s' if len(names) != 1 else ''} ({listed(names, 8)})"
        if not typer.confirm(printable(f"delete {runs} from {store.root}?")):
            echo("nothing deleted")
            raise typer.Exit(1)
    clean_leftovers(store.root)
    failed = []
    for name in names:
        try:
            live = remove_run(store.root, name, force=force)  # checked again: a writer may have started while we asked
        except EntropyWatchError as e:  # live now, written meanwhile, removed by another rm: the others still go
            typer.echo(error_line(e), err=True)  # each names its run
            failed.append(name)
            continue
        echo(printable(f"removed run {name}"))
        if live:  # --force on a live run: say what happens next rather than let it reappear unexplained
            message = (
                f"warning: run {name} was live: its writer goes on and creates the run again with the steps it logs "
                "from now on; stop the training (or its Watch), then rm it again to be rid of it"
            )
            typer.echo(printable(message), err=True)
    if failed:
        raise typer.Exit(1)


def _sql_error(err: BaseException) -> str:
    """A DuckDB error as one line: its message and hint (``Did you mean "scalars"?``), without the caret lines."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip() and not ln.lstrip().startswith(("LINE ", "^"))]
    msg = " ".join(lines) or type(err).__name__
    if msg.startswith("Catalog Error"):
        from entropy_watch.store.layout import TABLES

        msg += f" (views: {', '.join((*TABLES, 'runs'))})"
    return f"sql: {msg}"


def _compaction_words(report: Any) -> str:
    """A :class:`~entropy_watch.store.compact.CompactionReport` in words."""
    if not report.merged_files and not report.parts_written:
        done = "nothing to merge"
    else:
        files = f"{report.merged_files:,} segment file{'s' if report.merged_files != 1 else ''}"
        parts = f"{report.parts_written:,} part file{'s' if report.parts_written != 1 else ''}"
        done = f"merged {files} into {parts} ({report.rows:,} rows)"
    if report.busy:
        done += f"; skipped {len(report.busy)} busy folder{'s' if len(report.busy) != 1 else ''} (retry later)"
    return done


def _ago(ts: float | None) -> str:
    if not ts:
        return ""
    d = max(0.0, time.time() - ts)
    for unit, secs in (("d", 86400), ("h", 3600), ("m", 60)):
        if d >= secs:
            return f"{d / secs:.0f}{unit} ago"
    return f"{d:.0f}s ago"
