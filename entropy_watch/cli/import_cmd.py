"""``entropy-watch import PATH...``: bring runs logged by other tools into the store.

Examples::

    entropy-watch import outputs/grpo-qwen/                     # TRL output folder (latest checkpoint-*/)
    entropy-watch import verl_run.jsonl --run verl-dapo-s0
    entropy-watch import metrics.csv --map step=iter --map entropy=ent --map reward=acc
    entropy-watch import tb_logs/ --format tensorboard --replace --json
    entropy-watch import metrics.csv --vocab-size 151936           # V known: explosions measured against ln V

All inputs are parsed before anything is written; each run then appears in the store at once or not at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from entropy_watch.cli.common import REWARD_MAX_HELP, VOCAB_HELP, console, echo_json, parse_maps, positive, state, text

_BIG_BYTES = 8 * 1024 * 1024  # show a progress bar above this much input (or for more than a few files)


def register(app: typer.Typer) -> None:
    app.command("import")(import_)


def import_(
    ctx: typer.Context,
    paths: Annotated[
        list[Path], typer.Argument(help="Log files or folders (TRL output, TensorBoard, CSV, JSONL, ...).")
    ],
    run: Annotated[
        str | None, typer.Option("--run", "-r", help="Run name (one PATH only; default: from the file or folder).")
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help="trl, verl-jsonl, verl-console, tensorboard, wandb-csv, csv, jsonl, json, parquet, trackio, mlflow "
            "(mlflow.db), mlruns or wandb-offline (default: detected).",
        ),
    ] = None,
    maps: Annotated[
        list[str] | None,
        typer.Option("--map", "-m", help="canonical=COLUMN, repeatable: step, entropy, reward or a canonical name."),
    ] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite runs that already exist in the store.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the imported runs as JSON.")] = False,
    vocab_size: Annotated[
        int | None, typer.Option("--vocab-size", min=2, help=f"{VOCAB_HELP} Kept in the run's run.json.")
    ] = None,
    reward_max: Annotated[
        float | None,
        typer.Option("--reward-max", callback=positive, help=f"{REWARD_MAX_HELP} Kept in the run's run.json."),
    ] = None,
) -> None:
    """Import training logs written by TRL, verl, OpenRLHF (TensorBoard), W&B exports or any CSV/JSONL."""
    from entropy_watch.errors import EntropyWatchError
    from entropy_watch.importers import load_log
    from entropy_watch.importers.store_import import publish_runs

    mapping = parse_maps(maps)
    if run is not None and len(paths) > 1:
        raise EntropyWatchError(f"--run names one run but {len(paths)} paths were given; import them one at a time")
    root = state(ctx).root()
    runs = []
    with _progress(paths) as advance:
        for path in paths:
            runs.extend(
                load_log(
                    path,
                    fmt=fmt,
                    mapping=mapping or None,
                    run=run,
                    progress=advance,
                    vocab_size=vocab_size,
                    reward_max=reward_max,
                )
            )
    seen: dict[str, str] = {}
    for r in runs:
        if r.name in seen:
            raise EntropyWatchError(
                f"{seen[r.name]} and {r.source} both give the run name {r.name!r}; import them one at a time with --run"
            )
        seen[r.name] = r.source
    publish_runs(root, runs, replace=replace)
    rows = [_summary(r) for r in runs]
    if as_json:
        echo_json({"store": str(root), "runs": rows})
        return
    _print(root, rows)


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

    table = Table(title=text(f"imported into {root}"))
    for col in ("run", "format", "steps", "entropy points", "entropy column", "reward column"):
        table.add_column(col)
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
    out.print(table)
    for r in rows:
        for note in r["notes"]:
            out.print(text(f"{r['run']}: {note}", "dim"), soft_wrap=True)


class _progress:
    """A rich progress bar over the input bytes on stderr, for many or large inputs; a no-op otherwise."""

    def __init__(self, paths: list[Path]) -> None:
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
