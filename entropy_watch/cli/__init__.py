"""The ``entropy-watch`` command line (typer).

Each command group lives in its own module and registers itself with :func:`register`; this file only builds the
app and its global options (accepted before or after the command name); ``boundary.py`` holds the error boundary
and the exit codes. ``entropy-watch --help`` imports neither torch nor streamlit: command modules import heavy
dependencies inside the command functions.
"""

from __future__ import annotations

import importlib
import os

import typer

from entropy_watch import __version__
from entropy_watch.cli import boundary
from entropy_watch.cli.common import State, command_help, echo

# Command modules, in the order their commands appear in --help. Each has `register(app: typer.Typer) -> None`.
COMMAND_MODULES: tuple[str, ...] = (
    "entropy_watch.cli.store_cmds",  # ls, show, sql, compact, export
    "entropy_watch.cli.import_cmd",  # import
    "entropy_watch.cli.app_cmd",  # app
    "entropy_watch.cli.alerts_cmds",  # alerts, report
    "entropy_watch.cli.watch_cmd",  # watch
    "entropy_watch.cli.train_cmds",  # train, compare (reference trainer; torch imported inside)
)

app = typer.Typer(
    name="entropy-watch",
    cls=boundary.GlobalOptionsGroup,
    help="Watch RL post-training for entropy collapse and explosion.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        echo(f"entropy-watch {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    ctx: typer.Context,
    store: str = typer.Option(
        None, "--store", "-s", help="Store root (default: $ENTROPY_WATCH_DIR or ./ew_runs).", show_default=False
    ),
    endpoint_url: str = typer.Option(
        None,
        "--endpoint-url",
        help="S3-compatible endpoint for an s3:// store (MinIO, Ceph, R2; default: $AWS_ENDPOINT_URL_S3 or "
        "$AWS_ENDPOINT_URL).",
        show_default=False,
    ),
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback on errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    if endpoint_url:  # where every S3 client of this process and its children (the app server) looks for it
        os.environ["AWS_ENDPOINT_URL_S3"] = endpoint_url
    ctx.obj = State(store=store, debug=debug)


for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)
for _command in app.registered_commands:  # each docstring paragraph one line, wrapped to the terminal by --help
    if _command.help is None and _command.callback is not None:
        _command.help = command_help(_command.callback)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: usage mistakes exit 2 with typer's usage message, domain errors exit 1 with one
    line on stderr, Ctrl-C exits 130 (see :mod:`entropy_watch.cli.boundary`)."""
    boundary.run(app, argv)
