"""The docs work as pasted, where a new user's first hour found they did not.

- docs/integrations.md's OpenRLHF launcher runs: it called ``train(args)`` with neither defined (OpenRLHF builds
  ``args`` in its command line's ``__main__`` block, 430 lines of parser and checks) and dropped the environment
  OpenRLHF's own ``ray.init`` sets. The launcher now starts Ray with the worker hook and runs OpenRLHF's command line;
  the test runs it against the real ``openrlhf/cli/train_ppo_ray.py`` with Ray and OpenRLHF's GPU modules stubbed, and
  checks that OpenRLHF reaches ``train(args)`` without a ``ray.init`` of its own.
- docs/CONTRACTS.md names every defaulted parameter of each call it documents, and no keyword the call lacks
  (``Store.sql``'s ``limit`` was missing).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
INTEGRATIONS = (REPO / "docs" / "integrations.md").read_text()
CONTRACTS = (REPO / "docs" / "CONTRACTS.md").read_text()


def section_code(text: str, heading: str) -> str:
    """The first ```python block under ``heading`` (a ``## `` line), before the next heading."""
    body = text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]
    m = re.search(r"```python\n(.*?)```", body, re.S)
    assert m, f"no python block under {heading!r}"
    return m.group(1)


# Stands in for Ray and for the OpenRLHF modules that need GPUs (vLLM, DeepSpeed, flash-attn); the command line's
# module itself, its parser and its checks run for real. get_strategy is train()'s first call after the ray.init check.
STUBS = r"""
import json, os, sys, types
from unittest import mock
import importlib.util

calls = {"ray.init": [], "train": None}
ray = types.ModuleType("ray")
ray.is_initialized = lambda: bool(calls["ray.init"])
ray.init = lambda *a, **kw: calls["ray.init"].append(kw)
sys.modules["ray"] = ray
for name in ("ray.util", "ray.util.placement_group", "openrlhf.trainer.ray", "openrlhf.trainer.ray.launcher",
             "openrlhf.trainer.ray.ppo_actor", "openrlhf.trainer.ray.ppo_critic"):
    sys.modules[name] = mock.MagicMock()


class Reached(Exception):
    pass


def get_strategy(args):
    calls["train"] = {"entropy_coef": args.actor.entropy_coef, "model": args.actor.model_name_or_path}
    raise Reached


utils = types.ModuleType("openrlhf.utils")  # the real folder (utils/config.py), without its heavy __init__
utils.__path__ = [os.path.join(os.path.dirname(importlib.util.find_spec("openrlhf").origin), "utils")]
utils.get_strategy = get_strategy
sys.modules["openrlhf.utils"] = utils
sys.argv = ["launch.py", "--actor.model_name_or_path", "some/model", "--actor.entropy_coef", "0",
            "--algo.advantage.estimator", "group_norm", "--rollout.n_samples_per_prompt", "4"]
try:
    exec(compile(SNIPPET, "launch.py", "exec"), {"__name__": "__main__"})
except Reached:
    pass
print(json.dumps(calls))
"""


def run_openrlhf_launcher(snippet: str) -> dict[str, Any]:
    code = f"SNIPPET = {snippet!r}\n{STUBS}"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    out: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    return out


def openrlhf_cli_source() -> str:
    spec = importlib.util.find_spec("openrlhf")
    if spec is None or spec.origin is None:
        pytest.skip("openrlhf is not installed (make setup installs openrlhf==0.11.2 with --no-deps)")
    return (Path(spec.origin).parent / "cli" / "train_ppo_ray.py").read_text()


def test_openrlhf_launcher_reaches_train_with_the_hook_and_openrlhfs_environment() -> None:
    source = openrlhf_cli_source()
    calls = run_openrlhf_launcher(section_code(INTEGRATIONS, "## OpenRLHF"))
    assert calls["train"] == {"entropy_coef": 0.0, "model": "some/model"}  # OpenRLHF's own parser read the flags
    assert len(calls["ray.init"]) == 1  # ours; OpenRLHF's train() saw Ray up and skipped its own
    env = calls["ray.init"][0]["runtime_env"]
    module, _, fn = env["worker_process_setup_hook"].rpartition(".")
    assert callable(getattr(importlib.import_module(module), fn))
    assert {"ENTROPY_WATCH_DIR", "ENTROPY_WATCH_RUN"} <= set(env["env_vars"])
    own = set(re.findall(r'"([A-Z][A-Z0-9_]+)": os\.environ\.get\(', source))  # what its skipped ray.init would set
    assert own and own <= set(env["env_vars"]), sorted(own - set(env["env_vars"]))


def test_openrlhf_flags_the_docs_name_are_openrlhfs() -> None:
    flags = set(re.findall(r'add_argument\(\s*"(--[\w.]+)"', openrlhf_cli_source()))
    section = INTEGRATIONS.split("\n## OpenRLHF\n", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"(--(?:actor|algo|rollout|train|data|ds|reward|critic)\.[\w.]+)", section))
    assert "--actor.entropy_coef" in named and "--actor.policy_loss_type" in named
    assert sorted(named - flags) == []


def documented_calls(text: str) -> list[tuple[str, str]]:
    """(callable, parameter text) of each call written in CONTRACTS.md's python blocks, continuation lines joined."""
    calls: list[tuple[str, str]] = []
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        code = "\n".join(re.split(r"\s{2,}#", ln)[0] for ln in block.splitlines() if not ln.lstrip().startswith("#"))
        for m in re.finditer(r"^[ \t]*(?:\w+ = )?(?:with )?([A-Za-z_][\w.]*)\(", code, re.M):
            depth, end = 1, m.end()
            while depth and end < len(code):
                depth += {"(": 1, ")": -1}.get(code[end], 0)
                end += 1
            calls.append((m.group(1), code[m.end() : end - 1]))
    return calls


def _resolve(name: str) -> Any:
    """The object a documented call names: ``s.``/``w.``/``r.``/``t.``/``m.`` are the block's own variables."""
    from entropy_watch.monitor import Monitor
    from entropy_watch.store import Store, TailReader
    from entropy_watch.store.reads import RunReader
    from entropy_watch.store.writer import RunWriter

    names: dict[str, Any] = {"s": Store, "w": RunWriter, "r": RunReader, "t": TailReader, "m": Monitor}
    for mod in re.findall(r"^from ([\w.]+) import", CONTRACTS, re.M):
        if mod.startswith("entropy_watch") and (mod.split(".")[1] not in ("hooks", "trainer") or _has_torch()):
            module = importlib.import_module(mod)
            names.update({k: v for k, v in vars(module).items() if k not in names})
    head, _, attr = name.partition(".")
    obj = names.get(head)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part, None)
    return obj


def _has_torch() -> bool:
    return importlib.util.find_spec("torch") is not None


def signature_gaps(calls: list[tuple[str, str]]) -> list[str]:
    """A defaulted parameter of the real callable that the doc's call omits, or a ``keyword=`` the callable lacks."""
    gaps: list[str] = []
    for name, params in calls:
        obj = _resolve(name)
        if obj is None or not callable(obj):
            continue
        try:
            sig = inspect.signature(obj)
        except (TypeError, ValueError):
            continue
        words = set(re.findall(r"\b(\w+)\s*=", params)) | set(re.findall(r"(?:^|[,(*]\s*)(\w+)\b", params))
        real = sig.parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in real.values())
        defaulted = [p for p, v in real.items() if v.default is not v.empty]
        if "..." not in params:  # "Watch(run, ..., *, notify=None)": the rest is written out elsewhere
            gaps += [f"{name}: {p} not documented" for p in defaulted if p not in words]
        unknown = [k for k in re.findall(r"\b(\w+)=", params) if k not in real and not takes_any]
        gaps += [f"{name}: no parameter {k}" for k in unknown]
    return gaps


def test_signature_check_reads_the_contracts_calls() -> None:
    calls = dict(documented_calls(CONTRACTS))
    assert "compact" in calls and "min_age_s=60.0" in calls["compact"] and "s.sql" in calls
    assert signature_gaps([("s.sql", "query, params=None")]) == ["s.sql: limit not documented"]
    assert signature_gaps([("s.sql", "query, params=None, limit=None, nope=1")]) == ["s.sql: no parameter nope"]


def test_contracts_documents_every_defaulted_parameter() -> None:
    assert signature_gaps(documented_calls(CONTRACTS)) == []


def unimportable_classes(text: str) -> dict[str, str]:
    """Classes the text shows being called (``ControlConfig(...)``) -> why a reader cannot import them from what the
    text says: no ``from MODULE import Class`` for them in it, or that import fails."""
    imports = {
        n.strip(): m for m, names in re.findall(r"from ([\w.]+) import ([\w, ]+)", text) for n in names.split(",")
    }
    gaps: dict[str, str] = {}
    for name in sorted(set(re.findall(r"\b([A-Z][a-z]+[A-Z]\w*)\(", text))):
        module = imports.get(name)
        if module is None:
            gaps[name] = "no `from ... import` names it"
        elif not hasattr(importlib.import_module(module), name):
            gaps[name] = f"{module} has no {name}"
    return gaps


def test_unimportable_classes_reader() -> None:
    text = "`live=LiveOptions(max_duty=0.5)`; `from entropy_watch.notify import GoneClass`, `GoneClass()`"
    assert unimportable_classes(text) == {
        "LiveOptions": "no `from ... import` names it",
        "GoneClass": "entropy_watch.notify has no GoneClass",
    }


@pytest.mark.parametrize("doc", ["README.md", "docs/integrations.md"])
def test_every_class_a_doc_calls_says_where_to_import_it(doc: str) -> None:
    """README.md showed ``ControlConfig(...)`` and ``LiveOptions(...)`` without saying where either lives."""
    pytest.importorskip("torch")
    assert unimportable_classes((REPO / doc).read_text()) == {}
