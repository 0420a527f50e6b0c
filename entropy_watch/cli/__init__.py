"""The ``entropy-watch`` command line (typer).

Each command group lives in its own module and registers itself with :func:`register`; this file only builds the
app, the global options and the error boundary. ``entropy-watch --help`` imports neither torch nor streamlit: command
modules import heavy dependencies inside the command functions.
"""

from __future__ import annotations

import importlib
import sys

import typer

from entropy_watch import __version__
from entropy_watch.cli.common import State, fail

# Command modules, in the order their commands appear in --help. Each has `register(app: typer.Typer) -> None`.
COMMAND_MODULES: tuple[str, ...] = (
    "entropy_watch.cli.store_cmds",  # ls, show, sql, compact, export
    "entropy_watch.cli.import_cmd",  # import
    "entropy_watch.cli.app_cmd",  # app
    "entropy_watch.cli.alerts_cmds",  # alerts, watch, report
    "entropy_watch.cli.train_cmds",  # train, compare (reference trainer; torch imported inside)
)

app = typer.Typer(
    name="entropy-watch",
    help="Watch RL post-training for entropy collapse and explosion.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"entropy-watch {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    ctx: typer.Context,
    store: str = typer.Option(
        None, "--store", "-s", help="Store root (default: $ENTROPY_WATCH_DIR or ./ew_runs).", show_default=False
    ),
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback on errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    ctx.obj = State(store=store, debug=debug)


for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: domain errors become one line on stderr and exit code 1."""
    from entropy_watch.errors import EntropyWatchError

    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        rc = app(args=argv, standalone_mode=False)  # click returns typer.Exit's code here instead of raising
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except (EntropyWatchError, OSError, ValueError) as e:
        if debug:
            raise
        fail(e)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:  # click usage errors and the rest
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Abort):
            sys.exit(1)
        if debug:
            raise
        fail(e, prefix=f"internal error ({type(e).__name__}); rerun with --debug and report it")
