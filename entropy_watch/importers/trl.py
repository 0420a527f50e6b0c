"""TRL / Hugging Face ``trainer_state.json`` and TRL's ``completions/*.parquet`` (INTEGRATIONS §1.2, §1.5).

``PATH`` may be a ``trainer_state.json`` file, a ``checkpoint-N`` folder, or an output folder holding
``checkpoint-*/`` (the state with the highest ``global_step`` is taken; a root ``trainer_state.json`` written by
``save_state()`` wins ties). ``log_history`` is a list of flat dicts: training entries, ``eval_*`` entries at the same
steps, and a final summary; values may be ``null`` (TRL turns an all-NaN window into None: stored as NaN). A resumed
run carries its history forward, so steps are de-duplicated per column, the last occurrence winning.

With ``log_completions=True`` TRL writes ``<output_dir>/completions/completions_<step:05d>.parquet`` with columns
``step, prompt, completion, <one per reward function>, <extras>, advantage``, one row per sample. From them we add,
per step: ``adv/mean|std|min|max`` and ``adv/frac_zero_groups`` (share of prompts whose advantages are all equal, i.e.
whose group rewards had zero spread: no learning signal).

The model's ``config.json`` saved beside the state (in the checkpoint folder, else the output folder) gives the
vocabulary size V, the bound ``ln V`` the analysis measures an explosion against (``text_config.vocab_size`` for
multimodal models); a LoRA checkpoint holds no such file and V stays unknown.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from entropy_watch import metrics as M
from entropy_watch.errors import ImportFormatError
from entropy_watch.importers.base import Parsed, Progress, Series, frame_to_series
from entropy_watch.importers.generic import frame_from_records, load_json

STATE_FILE = "trainer_state.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_ZERO_SPREAD = 1e-6  # advantages within a group closer than this count as equal
_STATE_META = ("global_step", "max_steps", "logging_steps", "train_batch_size", "num_train_epochs", "epoch")


def is_trl_dir(path: Path) -> bool:
    """True if ``path`` holds a trainer_state.json directly or in a ``checkpoint-*`` subfolder."""
    return (path / STATE_FILE).is_file() or any(path.glob(f"checkpoint-*/{STATE_FILE}"))


def _checkpoints(path: Path) -> list[Path]:
    found = []
    for sub in path.iterdir():
        m = _CHECKPOINT.match(sub.name)
        if m and (sub / STATE_FILE).is_file():
            found.append((int(m.group(1)), sub / STATE_FILE))
    return [p for _, p in sorted(found)]


def locate(path: Path, progress: Progress | None = None) -> tuple[Path, Path, dict[str, Any]]:
    """``(state file, output folder, parsed state)`` for a file, checkpoint folder or output folder."""
    if path.is_file():
        state_path = path
    else:
        candidates = []
        if (path / STATE_FILE).is_file():
            candidates.append(path / STATE_FILE)
        ckpts = _checkpoints(path)
        if ckpts:
            candidates.append(ckpts[-1])
        if not candidates:
            raise ImportFormatError(f"no {STATE_FILE} in {path} or its checkpoint-*/ folders; pass the file itself")
        if len(candidates) == 1:
            state_path = candidates[0]
        else:
            docs = [(c, load_json(c)) for c in candidates]
            best = max(docs, key=lambda cd: _global_step(cd[1]))  # max keeps the first (the root file) on ties
            state_path = best[0]
            return state_path, _output_dir(state_path), _check_state(state_path, best[1])
    doc = load_json(state_path, progress)
    return state_path, _output_dir(state_path), _check_state(state_path, doc)


def _global_step(doc: Any) -> int:
    return int(doc.get("global_step") or 0) if isinstance(doc, dict) else -1


def _output_dir(state_path: Path) -> Path:
    parent = state_path.parent
    return parent.parent if _CHECKPOINT.match(parent.name) else parent


def _check_state(path: Path, doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict) or not isinstance(doc.get("log_history"), list):
        raise ImportFormatError(f"{path}: no 'log_history' list; this is not a Trainer state file (pass --format)")
    if not doc["log_history"]:
        raise ImportFormatError(f"{path}: 'log_history' is empty (nothing was logged); nothing to import")
    return doc


def read_trainer_state(path: Path, step_column: str | None = None, progress: Progress | None = None) -> Parsed:
    """Series of a TRL/HF run, plus advantage statistics from ``completions/*.parquet`` when present."""
    state_path, out_dir, doc = locate(path, progress)
    frame = frame_from_records(state_path, doc["log_history"], what="log_history entry", null_is_nan=True)
    parsed = frame_to_series(frame, step_column)
    parsed.notes[:0] = frame.notes  # entries skipped (a null, a list): said, as for any other log
    parsed.meta["trainer_state"] = {k: doc.get(k) for k in _STATE_META if k in doc}
    parsed.meta["trainer_state_file"] = str(state_path.resolve())
    parsed.meta["framework"] = "trl"
    vocab = model_vocab(state_path.parent, out_dir)
    if vocab is not None:
        parsed.meta["vocab_size"], config_path = vocab
        parsed.notes.append(f"vocabulary size {vocab[0]} from {config_path}")
    comp_dir = out_dir / "completions"
    files = sorted(comp_dir.glob("completions_*.parquet")) if comp_dir.is_dir() else []
    if files:
        adv = completion_stats(files)
        if "frac_reward_zero_std" in parsed.series:  # the trainer's own, over the whole batch, wins
            adv["completions/frac_zero_groups"] = adv.pop(M.ADV_FRAC_ZERO_GROUPS, (np.empty(0), np.empty(0)))
        for name, series in adv.items():
            if len(series[0]):
                parsed.series.setdefault(name, series)
        parsed.meta["completions_files"] = len(files)
        parsed.notes.append(f"advantage statistics from {len(files)} completions parquet file(s) in {comp_dir}")
    return parsed


def model_vocab(*folders: Path) -> tuple[int, Path] | None:
    """``(vocab_size, config path)`` from the first of ``folders`` whose ``config.json`` states one (top level or
    ``text_config``); None when none does. A config that cannot be read is passed over: V is then unknown, which the
    analysis handles, and the log itself is still imported."""
    for folder in folders:
        path = folder / "config.json"
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for cfg in (doc, doc.get("text_config")) if isinstance(doc, dict) else ():
            v = cfg.get("vocab_size") if isinstance(cfg, dict) else None
            if isinstance(v, int) and not isinstance(v, bool) and v >= 2:
                return v, path
    return None


def completion_stats(files: list[Path]) -> dict[str, Series]:
    """``adv/mean|std|min|max`` and ``adv/frac_zero_groups`` per step from TRL completions parquet files."""
    import pyarrow.parquet as pq

    per_step: dict[int, dict[str, float]] = {}
    for f in files:
        try:
            table = pq.read_table(f)
        except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ...
            raise ImportFormatError(f"{f}: not a readable parquet file ({e}); remove or re-export it") from None
        cols = set(table.column_names)
        if "advantage" not in cols or "step" not in cols:
            raise ImportFormatError(f"{f}: no 'step'/'advantage' columns (has {', '.join(sorted(cols))})")
        steps = np.asarray(table.column("step").to_numpy(zero_copy_only=False), dtype=np.int64)
        adv = np.asarray(table.column("advantage").to_numpy(zero_copy_only=False), dtype=np.float64)
        prompts = table.column("prompt").to_pylist() if "prompt" in cols else None
        for step in np.unique(steps):
            idx = np.flatnonzero(steps == step)
            group_keys = [prompts[i] for i in idx] if prompts is not None else None
            per_step[int(step)] = _stats(adv[idx], group_keys)
    out: dict[str, Series] = {}
    ordered = sorted(per_step)
    for name in (M.ADV_MEAN, M.ADV_STD, M.ADV_MIN, M.ADV_MAX, M.ADV_FRAC_ZERO_GROUPS):
        pts = [(s, per_step[s][name]) for s in ordered if name in per_step[s]]
        if pts:
            out[name] = (np.array([p[0] for p in pts], dtype=np.int64), np.array([p[1] for p in pts], dtype=np.float64))
    return out


def _stats(adv: np.ndarray, prompts: list[Any] | None) -> dict[str, float]:
    finite = adv[np.isfinite(adv)]
    if len(finite) == 0:
        return {}
    out = {
        M.ADV_MEAN: float(finite.mean()),
        M.ADV_STD: float(finite.std()),
        M.ADV_MIN: float(finite.min()),
        M.ADV_MAX: float(finite.max()),
    }
    if prompts is not None:
        groups: dict[str, list[float]] = {}
        for p, a in zip(prompts, adv, strict=True):
            key = p if isinstance(p, str) else json.dumps(p, sort_keys=True, default=str)
            groups.setdefault(key, []).append(float(a))
        zero = sum(1 for g in groups.values() if len(g) > 1 and max(g) - min(g) < _ZERO_SPREAD)
        multi = sum(1 for g in groups.values() if len(g) > 1)
        if multi:
            out[M.ADV_FRAC_ZERO_GROUPS] = zero / multi
    return out


def default_name(path: Path) -> str:
    """The output folder's name (``.../grpo-run/checkpoint-40`` -> ``grpo-run``)."""
    p = path.resolve()
    if p.is_file():
        p = p.parent
    return p.parent.name if _CHECKPOINT.match(p.name) else p.name
