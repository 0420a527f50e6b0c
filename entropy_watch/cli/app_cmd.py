"""``entropy-watch app``: start the Streamlit app on a store, bound to 127.0.0.1 unless told otherwise.

    entropy-watch app --store ./ew_runs --port 8501

Runs ``python -m streamlit run <installed entropy_watch/app/main.py> --server.address HOST --server.port PORT``
with the store passed both as ``ENTROPY_WATCH_DIR`` and as the script's ``--store`` argument. Streamlit is imported
by the child process only, so ``entropy-watch --help`` stays light.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer

from entropy_watch.cli.common import state
from entropy_watch.errors import EntropyWatchError, require
from entropy_watch.store.layout import ENV_STORE


def register(app: typer.Typer) -> None:
    app.command("app")(app_command)


def app_script() -> Path:
    """Path of the installed app's entry script (``entropy_watch/app/main.py``), without importing streamlit."""
    import importlib.util

    spec = importlib.util.find_spec("entropy_watch.app")
    if spec is None or not spec.submodule_search_locations:
        raise EntropyWatchError("the app package entropy_watch.app is not installed; reinstall entropy-watch")
    return Path(list(spec.submodule_search_locations)[0]) / "main.py"


def streamlit_command(root: Path, host: str, port: int, headless: bool) -> list[str]:
    """The child command line (exposed for tests)."""
    return [
        sys.executable, "-m", "streamlit", "run", str(app_script()),
        "--server.address", host, "--server.port", str(port), "--server.headless", "true" if headless else "false",
        "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer",
        "--", "--store", str(root),
    ]  # fmt: skip


def app_command(
    ctx: typer.Context,
    store: str = typer.Option(
        None,
        "--store",
        "-s",
        help="Store root (default: the global --store, $ENTROPY_WATCH_DIR or ./ew_runs).",
        show_default=False,
    ),  # fmt: skip
    port: int = typer.Option(8501, "--port", "-p", min=1, max=65535, help="Port to serve on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; 0.0.0.0 exposes the app to the network."),
    headless: bool = typer.Option(True, "--headless/--open-browser", help="Do not open a browser window."),
) -> None:
    """Open the Streamlit app (runs, one run in depth, compare) on a store."""
    require("streamlit", "app")
    require("plotly", "app")
    from entropy_watch.store.layout import default_root

    root = (default_root(store) if store else state(ctx).root()).expanduser().resolve()
    cmd = streamlit_command(root, host, port, headless)
    typer.echo(f"entropy-watch app: store {root} on http://{host}:{port}", err=True)
    env = dict(os.environ, **{ENV_STORE: str(root)})
    try:
        code = subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)
