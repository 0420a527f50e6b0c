"""Fixtures for the app tests: stores made by the synthetic generator, by an import and by a real ``Watch`` loop.

Streamlit's caches are process-global, so every test starts with them cleared.
"""

from __future__ import annotations

import base64
import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

APP_MAIN = Path(__file__).resolve().parents[2] / "app" / "main.py"
COLLAPSE, HEALTHY, IMPORTED = "grpo-collapse", "repo-healthy", "imported-csv"


@pytest.fixture(autouse=True)
def _clear_streamlit_caches() -> None:
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()


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
    write_to_store(root, COLLAPSE, "collapse_exp", seed=1, n_steps=300)
    write_to_store(root, HEALTHY, "healthy", seed=2, n_steps=300)
    write_imported(root, tmp_path_factory.mktemp("csv"))
    return root


def load_example(name: str) -> Any:
    path = Path(__file__).resolve().parents[2] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_ew_example_{name}", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_watch_loop(root: Path, run: str, steps: int) -> None:
    """A short real policy-gradient loop (examples/watch_loop.py's model and sampler) recorded with ``Watch``."""
    import torch

    from entropy_watch.hooks import Watch

    ex = load_example("watch_loop")
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    policy = ex.TinyPolicy()
    opt = torch.optim.Adam(policy.parameters(), lr=3e-2)
    n = ex.PROMPTS * ex.G
    with Watch(run, store=root, strict=True, seed=0, framework="tests/app") as watch:
        for step in range(steps):
            completions = ex.sample(policy, n, gen)
            inputs = torch.cat([torch.full((n, 1), ex.V), completions[:, :-1]], dim=1)
            reward = (completions < 4).float().mean(dim=1)
            grouped = reward.view(ex.PROMPTS, ex.G)
            adv = ((grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, keepdim=True) + 1e-6)).view(-1)
            mask = torch.ones(n, ex.T)
            with torch.no_grad():
                old_logp = torch.log_softmax(policy(inputs), -1).gather(-1, completions[..., None]).squeeze(-1)
            for _ in range(2):
                logits = policy(inputs)
                logp = torch.log_softmax(logits, -1).gather(-1, completions[..., None]).squeeze(-1)
                ratio = torch.exp(logp - old_logp)
                surrogate = torch.min(ratio * adv[:, None], ratio.clamp(0.8, 1.2) * adv[:, None])
                loss = -(surrogate * mask).sum() / mask.sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
            watch.log_tokens(step, logits=logits, mask=mask, logp=logp, old_logp=old_logp, advantages=adv,
                             group_ids=torch.arange(ex.PROMPTS).repeat_interleave(ex.G), token_ids=completions)  # fmt: skip
            watch.log(step, **{"reward/mean": reward.mean()})


@pytest.fixture(scope="session")
def watch_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("watch") / "store"
    run_watch_loop(root, "watch-loop", steps=40)
    return root


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
