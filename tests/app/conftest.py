"""Fixtures for the app tests: stores made by the synthetic generator, by an import and by a real ``Watch`` loop.

Streamlit's caches are process-global, so every test starts with them cleared.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

APP_HOME = Path(__file__).resolve().parents[2] / "app" / "home.py"
APP_MAIN = Path(__file__).resolve().parents[2] / "app" / "main.py"
COLLAPSE, HEALTHY, IMPORTED = "grpo-collapse", "repo-healthy", "imported-csv"


@pytest.fixture(autouse=True)
def _clear_streamlit_caches() -> Iterator[None]:
    """Fresh readers, monitors and caches for every test (the monitors' threads are stopped after it)."""
    from entropy_watch.app import data

    data.clear_caches()
    yield
    data.clear_caches()


CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]  # fmt: skip
IN_A_BROWSER = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is absent (apt-get install -y chromium)"),
]
"""The marks of a test file that drives the app in chromium (``pytestmark = IN_A_BROWSER``)."""


@contextlib.contextmanager
def report_page(path: Path, plots: int, wait_ms: int) -> Iterator[tuple[Any, list[str]]]:
    """The HTML report ``path`` opened from disk in chromium once ``plots`` charts are drawn and the page has loaded:
    ``(page, every URL it requested)``; the browser closes on leaving."""
    from playwright import sync_api

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            page = browser.new_page()
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(path.as_uri())
            page.wait_for_function(
                f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {int(plots)}", timeout=wait_ms
            )
            page.wait_for_load_state("load", timeout=wait_ms)
            yield page, requests
        finally:
            browser.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def streamlit_server(store: Path, log: Path, wait_s: float) -> Iterator[str]:
    """``streamlit run app/main.py -- --store STORE`` on a free port of 127.0.0.1 (headless, no file watcher, its
    output in ``log``): its URL once ``/_stcore/health`` answers ``ok``; stopped on leaving. A server that exits, or
    does not answer within ``wait_s`` seconds, raises RuntimeError naming the log."""
    port = free_port()
    out = log.open("w")
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(APP_MAIN),
        "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none", "--client.toolbarMode", "viewer",
        "--", "--store", str(store),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, ENTROPY_WATCH_DIR=""))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start (exit {proc.poll()}); see {log}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()


def write_imported(root: Path, tmp: Path, n: int = 60) -> None:
    """An imported run: entropy only (no reward, no histogram, no tokens, no heartbeat)."""
    from entropy_watch.importers import import_log
    from entropy_watch.store import Store

    csv = tmp / "log.csv"
    h = 1.2 * np.exp(-np.arange(n) / 40.0) + 0.1
    csv.write_text("step,entropy\n" + "".join(f"{i},{v:.6f}\n" for i, v in enumerate(h)))
    import_log(Store(root), csv, run=IMPORTED, mapping={"entropy/mean": "entropy"})


@pytest.fixture(scope="session")
def synthetic_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two synthetic runs (collapse and healthy, 300 steps each) and an imported entropy-only CSV run."""
    from entropy_watch.synthetic import write_to_store

    root = tmp_path_factory.mktemp("syn") / "store"
    write_to_store(root, COLLAPSE, "fast_collapse", seed=1, n_steps=300)
    write_to_store(root, HEALTHY, "healthy", seed=2, n_steps=300)
    write_imported(root, tmp_path_factory.mktemp("csv"))
    return root


def run_watch_loop(root: Path, run: str, steps: int, vocab: int = 16, length: int = 8, batch: int = 32) -> None:
    """A short real GRPO-style loop recorded with ``Watch`` (as in examples/watch_loop.py, with a position-wise
    logits table instead of a GRU so it runs in well under a second): reward = share of tokens with id < 4, group
    normalised advantages, two clipped optimizer steps per batch so the ratio moves and clipping binds."""
    import torch

    from entropy_watch.hooks import Watch

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    table = torch.nn.Parameter(torch.zeros(length, vocab))
    opt = torch.optim.SGD([table], lr=2.0)
    groups = batch // 8
    with Watch(run, store=root, strict=True, seed=0, framework="tests/app", vocab_size=vocab) as watch:
        for step in range(steps):
            with torch.no_grad():
                probs = torch.softmax(table, -1).expand(batch, length, vocab).reshape(-1, vocab)
                completions = torch.multinomial(probs, 1, generator=gen).view(batch, length)
                old_logp = torch.log_softmax(table, -1).expand(batch, -1, -1).gather(-1, completions[..., None])
                old_logp = old_logp.squeeze(-1)
            reward = (completions < 4).float().mean(dim=1)
            grouped = reward.view(groups, 8)
            adv = ((grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, keepdim=True) + 1e-6)).view(-1)
            mask = torch.ones(batch, length)
            for _ in range(2):
                logits = table.expand(batch, -1, -1)
                logp = torch.log_softmax(logits, -1).gather(-1, completions[..., None]).squeeze(-1)
                ratio = torch.exp(logp - old_logp)
                surrogate = torch.min(ratio * adv[:, None], ratio.clamp(0.8, 1.2) * adv[:, None])
                loss = -(surrogate * mask).sum() / mask.sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
            watch.log_tokens(step, logits=logits.detach(), mask=mask, logp=logp.detach(), old_logp=old_logp,
                             advantages=adv, group_ids=torch.arange(groups).repeat_interleave(8),
                             token_ids=completions)  # fmt: skip
            watch.log(step, **{"reward/mean": reward.mean()})


@pytest.fixture(scope="session")
def watch_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("watch") / "store"
    run_watch_loop(root, "watch-loop", steps=30)
    return root


def shown(source: str) -> str:
    """What Streamlit's markdown shows of ``source`` made by ``display.md``: the backslash escapes resolved and the
    invisible word joiners dropped (the security test checks the rendering itself with a CommonMark renderer)."""
    from entropy_watch.app.display import WORD_JOINER

    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", source).replace(WORD_JOINER, "")


def decode(arr: Any) -> np.ndarray:
    """A Plotly JSON array: a plain list, or ``{"dtype", "bdata"[, "shape"]}`` (plotly >= 6 base64)."""
    if isinstance(arr, dict) and "bdata" in arr:
        out = np.frombuffer(base64.b64decode(arr["bdata"]), dtype=np.dtype(arr["dtype"]))
        if "shape" in arr:
            shape = [int(s) for s in str(arr["shape"]).split(",")]
            out = out.reshape(shape)
        return out
    return np.asarray(arr)


def figures(at: Any) -> dict[str, dict[str, Any]]:
    """The app's Plotly figures by chart key (``json.loads(el.proto.spec)``)."""
    out = {}
    for el in at.get("plotly_chart"):
        spec = json.loads(el.proto.spec)
        key = el.proto.id.split("-")[-1] if el.proto.id else str(len(out))
        out[key] = spec
    return out


def titles(at: Any) -> dict[str, dict[str, Any]]:
    """The figures by their title text."""
    out = {}
    for el in at.get("plotly_chart"):
        spec = json.loads(el.proto.spec)
        out[spec["layout"]["title"]["text"]] = spec
    return out
