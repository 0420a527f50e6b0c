"""``entropy-watch import PATH...``: bring runs logged by other tools into the store.

Examples::

    entropy-watch import outputs/grpo-qwen/                     # TRL output folder (latest checkpoint-*/)
    entropy-watch import verl_run.jsonl --run verl-dapo-s0
    entropy-watch import metrics.csv --map step=iter --map entropy=ent --map reward=acc
    entropy-watch import tb_logs/ --format tensorboard --replace --json
    entropy-watch import metrics.csv --vocab-size 151936           # V known: explosions measured against ln V

Each PATH is parsed before anything of it is written, and its runs then appear in the store at once or not at all.
A PATH that cannot be imported (malformed, a run that already exists, a run name an earlier PATH gave) gets one
``error:`` line saying it was not imported and what to do; the other PATHs are still imported, and the command exits
1 (0 when every PATH was imported).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from entropy_watch.cli.common import (
    INTERNAL_ERROR,
    REWARD_MAX_HELP,
    VOCAB_HELP,
    console,
    echo_json,
    is_input_error,
    log_format,
    one_line,
    parse_maps,
    positive,
    print_table,
    printable,
    run_name,
    state,
    text,
)
from entropy_watch.errors import EntropyWatchError

_BIG_BYTES = 8 * 1024 * 1024  # show a progress bar above this much input (or for more than a few files)


def register(app: typer.Typer) -> None:
    app.command("import")(import_)


def import_(
    ctx: typer.Context,
    paths: Annotated[
        list[Path], typer.Argument(help="Log files or folders (TRL output, TensorBoard, CSV, JSONL, ...).")
    ],
    run: Annotated[
        str | None,
        typer.Option(
            "--run", "-r", callback=run_name, help="Run name (one PATH only; default: from the file or folder)."
        ),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            callback=log_format,
            help="trl, verl-jsonl, verl-console, trl-console (a Trainer's console log), tensorboard, wandb-csv, csv, "
            "jsonl, json, parquet, trackio, mlflow (mlflow.db), mlruns or wandb-offline (default: detected).",
        ),
    ] = None,
    maps: Annotated[
        list[str] | None,
        typer.Option("--map", "-m", help="canonical=COLUMN, repeatable: step, entropy, reward or a canonical name."),
    ] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite runs that already exist in the store.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the imported runs as JSON.")] = False,
    vocab_size: Annotated[
        int | None, typer.Option("--vocab-size", min=2, help=f"{VOCAB_HELP} Kept in the run's _run.json.")
    ] = None,
    reward_max: Annotated[
        float | None,
        typer.Option("--reward-max", callback=positive, help=f"{REWARD_MAX_HELP} Kept in the run's _run.json."),
    ] = None,
) -> None:
    """Import training logs written by TRL, verl, OpenRLHF (TensorBoard), W&B exports or any CSV/JSONL."""
    from entropy_watch.importers import load_log

    mapping = parse_maps(maps)
    if run is not None and len(paths) > 1:
        raise typer.BadParameter(  # a usage mistake (exit 2), before anything is read
            f"names one run but {len(paths)} paths were given; import them one at a time", param_hint="--run"
        )
    st = state(ctx)
    root = st.root()
    imported: list[Any] = []
    errors: list[dict[str, str]] = []
    given: dict[str, Path] = {}  # run name -> the PATH of this call that gave it
    with _progress(paths) as advance:
        opts = {"fmt": fmt, "mapping": mapping or None, "run": run, "vocab_size": vocab_size, "reward_max": reward_max}
        load = partial(load_log, progress=advance, **opts)
        for path in paths:
            try:
                runs = _import_one(root, path, load, given, replace=replace)
            except Exception as e:  # noqa: BLE001 - one PATH failed: say so on one line, import the others
                if st.debug:
                    raise
                errors.append({"path": str(path), "error": _not_imported(path, e)})
                typer.echo(errors[-1]["error"], err=True)
                continue
            imported.extend(runs)
    rows = [_summary(r) for r in imported]
    if as_json:
        echo_json({"store": str(root), "runs": rows, "errors": errors})
    elif rows:
        _print(root, rows)
    if errors:
        raise typer.Exit(1)


def _import_one(
    root: Path, path: Path, load: Callable[[Path], list[Any]], given: dict[str, Path], *, replace: bool
) -> list[Any]:
    """Parse ``path`` with ``load`` and publish its runs (all of them or none); ``given`` holds the run names earlier
    PATHs of this call imported, and gets this PATH's."""
    from entropy_watch.importers.store_import import publish_runs

    runs = load(path)
    for r in runs:
        if r.name in given:
            raise EntropyWatchError(
                f"{given[r.name]} already gave the run name {r.name!r}; import {path} on its own with --run NAME"
            )
    publish_runs(root, runs, replace=replace)
    given.update((r.name, path) for r in runs)
    return runs


def _not_imported(path: Path, err: BaseException) -> str:
    """The one line for a PATH that was not imported: the path, that it was not imported, and the reason (whose
    message says what to do); a bug says "internal error"."""
    prefix = "error" if is_input_error(err) else INTERNAL_ERROR.format(name=type(err).__name__)
    return printable(f"{prefix}: {path} not imported: {one_line(err)}")


def _summary(r: Any) -> dict[str, Any]:
    from entropy_watch import metrics as M

    steps, _ = r.scalars[M.ENTROPY_MEAN]
    rng = r.step_range
    return {
        "run": r.name,
        "source": r.source,
        "format": r.fmt,
        "first_step": rng[0] if rng else None,
        "last_step": rng[1] if rng else None,
        "entropy_points": len(steps),
        "series": len(r.scalars),
        "mapping": r.mapping,
        "entropy_definition": r.meta.get("entropy_definition"),
        "vocab_size": r.meta.get("vocab_size"),
        "reward_max": r.meta.get("reward_max"),
        "notes": r.notes,
    }


def _print(root: Path, rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from entropy_watch import metrics as M

    table = Table()
    for col in ("run", "format", "steps", "entropy points", "entropy column", "reward column"):
        table.add_column(col, overflow="fold")  # a narrow terminal folds a name, never cuts it
    for r in rows:
        table.add_row(
            text(r["run"]),
            text(r["format"]),
            f"{r['first_step']}-{r['last_step']}",
            str(r["entropy_points"]),
            text(r["mapping"].get(M.ENTROPY_MEAN, "")),
            text(r["mapping"].get(M.REWARD_MEAN, "-")),
        )
    out = console()
    print_table(table, f"imported into {root}", out)
    for r in rows:
        for note in r["notes"]:
            out.print(text(f"{r['run']}: {note}", "dim"), soft_wrap=True)


class _progress:
    """A rich progress bar over the input bytes on stderr, for many or large inputs on a terminal; a no-op otherwise
    (in a CI log it left a blank line on stderr, which a script reads as "something went wrong")."""

    def __init__(self, paths: list[Path]) -> None:
        self.total, self.enabled = 0, False
        if sys.stderr is not None and sys.stderr.isatty():
            self.total = sum(_size(p) for p in paths)
            self.enabled = self.total > _BIG_BYTES or len(paths) > 3
        self._bar: Any = None

    def __enter__(self) -> Any:
        if not self.enabled:
            return None
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn("importing"),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._bar.start()
        task = self._bar.add_task("import", total=max(self.total, 1))
        return lambda n: self._bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def _size(path: Path) -> int:
    try:
        if path.is_file():
            return path.stat().st_size
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    except OSError:
        return 0
