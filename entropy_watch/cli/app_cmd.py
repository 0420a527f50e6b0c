"""``entropy-watch app``: start the Streamlit app on a store, bound to 127.0.0.1 unless told otherwise.

    entropy-watch app --store ./ew_runs --port 8501

Runs ``python -m streamlit run <installed entropy_watch/app/main.py> --server.address HOST --server.port PORT``
with the store passed both as ``ENTROPY_WATCH_DIR`` and as the script's ``--store`` argument. Streamlit is imported
by the child process only, so ``entropy-watch --help`` stays light. The address, usage statistics and toolbar are
passed as flags too (``app/.streamlit/config.toml``, main.py's own settings file, gives ``streamlit run
app/main.py`` the same from any directory).

SIGTERM, SIGHUP and Ctrl-C (SIGINT) stop the Streamlit child too: it is asked to stop (SIGTERM; Streamlit shuts its
server down cleanly) and killed if it has not exited within ``STOP_GRACE_S``, so the port is never left served by
an orphan. A ``kill -9`` of this process cannot be caught: on Linux the child is started with a parent-death signal
(``prctl(PR_SET_PDEATHSIG, SIGTERM)``), so the kernel stops it when this process ends, however it ended
(:func:`_die_with_parent`; elsewhere the child is left to the ways out above).

An empty ``--host`` (``--host "$HOST"`` with HOST unset) is a usage error (exit 2) before anything starts: Streamlit
would bind it as 0.0.0.0, every network interface (the app itself refuses to serve it, after starting the server).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import typer

from entropy_watch.cli.common import state
from entropy_watch.errors import EntropyWatchError, require
from entropy_watch.store.layout import ENV_STORE

STOP_GRACE_S = 10.0  # seconds the child gets to stop after SIGTERM before SIGKILL
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_FORWARDED = (signal.SIGTERM, signal.SIGHUP) if hasattr(signal, "SIGHUP") else (signal.SIGTERM,)


class _Stopped(Exception):
    """Raised in the main thread by the SIGTERM/SIGHUP handler while the child runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


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
    if not host.strip():
        raise typer.BadParameter(
            "empty address: Streamlit would listen on every network interface; give 127.0.0.1 (this machine only) "
            "or 0.0.0.0 (the network, on purpose)",
            param_hint="--host",
        )
    require("streamlit", "app")
    require("plotly", "app")
    from entropy_watch.store.layout import default_root

    root = (default_root(store) if store else state(ctx).root()).expanduser().resolve()
    cmd = streamlit_command(root, host, port, headless)
    typer.echo(f"entropy-watch app: store {root} on http://{host}:{port}", err=True)
    env = dict(os.environ, **{ENV_STORE: str(root)})
    raise typer.Exit(run_child(cmd, env))


def run_child(cmd: list[str], env: dict[str, str], grace_s: float = STOP_GRACE_S) -> int:
    """Run ``cmd`` until it exits or this process is told to stop; never leave it running. Returns the exit status.

    Ctrl-C or SIGTERM/SIGHUP: the child is stopped (:func:`stop_child`); the status is 130 after Ctrl-C (as every
    command's), 0 after SIGTERM/SIGHUP (a process manager's requested stop).
    """
    proc = subprocess.Popen(cmd, env=env, preexec_fn=_die_with_parent())
    try:
        with _signals_raise():
            return _status(proc.wait())
    except KeyboardInterrupt:
        stop_child(proc, grace_s)
        return 130
    except _Stopped:
        stop_child(proc, grace_s)
        return 0
    finally:
        if proc.poll() is None:  # any other way out (an error in this process) still takes the child down
            stop_child(proc, grace_s)


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel send the child SIGTERM when this process ends (Linux); None elsewhere, or
    where libc's ``prctl`` cannot be found. A parent that died before the call (between ``fork`` and ``prctl``) is
    noticed by the child's parent id changing: the child then stops itself."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:  # runs in the child between fork and exec: no imports, no locks
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def stop_child(proc: subprocess.Popen[bytes], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM ``proc``, wait up to ``grace_s`` seconds for it to exit, then SIGKILL it."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGTERM/SIGHUP raise :class:`_Stopped` in the main thread while the block runs (Python's default for SIGTERM
    would end this process at once and orphan the child); the previous handlers come back after."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise _Stopped(signum)

    previous = {sig: signal.signal(sig, handler) for sig in _FORWARDED}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _status(code: int) -> int:
    """A ``Popen.returncode`` as a shell would report it (killed by signal N -> 128 + N)."""
    return 128 - code if code < 0 else code
