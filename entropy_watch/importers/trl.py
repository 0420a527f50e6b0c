"""TRL / Hugging Face ``trainer_state.json`` and TRL's ``completions/*.parquet`` (INTEGRATIONS §1.2, §1.5).

``PATH`` may be a ``trainer_state.json`` file, a ``checkpoint-N`` folder, or an output folder holding
``checkpoint-*/`` (the state with the highest ``global_step`` is taken, a root ``trainer_state.json`` written by
``save_state()`` winning ties, unless a state written later holds another history: see :func:`locate`; a note names
the file read). ``log_history`` is a list of flat dicts: training entries, ``eval_*`` entries at the same
steps, and a final summary; values may be ``null`` (TRL turns an all-NaN window into None: stored as NaN). A resumed
run carries its history forward, so steps are de-duplicated per column, the last occurrence winning.

With ``log_completions=True`` TRL writes ``<output_dir>/completions/completions_<step:05d>.parquet`` with columns
``step, prompt, completion, <one per reward function>, <extras>, advantage``, one row per sample. From them we add,
per step: ``adv/mean|std|min|max`` and ``adv/frac_zero_groups`` (share of prompts whose advantages are all equal, i.e.
whose group rewards had zero spread: no learning signal).

The model's ``config.json`` saved beside the state (in the checkpoint folder, else the output folder) gives the
vocabulary size V, the bound ``ln V`` the analysis measures an explosion against (``text_config.vocab_size`` for
multimodal models); a LoRA checkpoint holds no such file and V stays unknown.

A run whose output folder is gone often still has its console log (``nohup.out``, ``slurm-<id>.out``): the HF
Trainer prints each ``log_history`` entry as a Python dict, ``{'loss': 0.0123, ..., 'entropy': 0.41, 'epoch': 0.05}``
(``ProgressCallback`` after the progress bar and a ``\r``; ``PrinterCallback`` on its own line). Those are read as
format ``trl-console``; the step of an entry is the training progress bar's ``N/M`` last drawn before it (the bar a
training entry follows; evaluation and vLLM bars have another ``M``), else, with no bar, the order of the training
entries (a note says which).
"""

from __future__ import annotations

import ast
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from entropy_watch import metrics as M
from entropy_watch.errors import ImportFormatError
from entropy_watch.importers.base import Frame, Parsed, Progress, Series, frame_to_series
from entropy_watch.importers.generic import frame_from_records, load_json, open_text

STATE_FILE = "trainer_state.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_ZERO_SPREAD = 1e-6  # advantages within a group closer than this count as equal
_STATE_META = ("global_step", "max_steps", "logging_steps", "train_batch_size", "num_train_epochs", "epoch")


def is_trl_dir(path: Path) -> bool:
    """True if ``path`` holds a trainer_state.json directly or in a ``checkpoint-*`` subfolder."""
    return (path / STATE_FILE).is_file() or any(path.glob(f"checkpoint-*/{STATE_FILE}"))


def _checkpoints(path: Path) -> list[tuple[int, Path]]:
    """``(N, checkpoint-N/trainer_state.json)`` of ``path``'s checkpoint folders, by N."""
    found = []
    for sub in path.iterdir():
        m = _CHECKPOINT.match(sub.name)
        if m and (sub / STATE_FILE).is_file():
            found.append((int(m.group(1)), sub / STATE_FILE))
    return sorted(found)


def locate(path: Path, progress: Progress | None = None) -> tuple[Path, Path, dict[str, Any], list[str]]:
    """``(state file, output folder, parsed state, notes)`` for a file, checkpoint folder or output folder.

    An output folder may hold several states: ``checkpoint-N/trainer_state.json`` for each checkpoint kept and a
    root ``trainer_state.json`` (``save_state()`` at the end). The *latest* is the one with the highest global step
    (the root on a tie), the *newest* the one written last (modification time). The rule:

    * the latest is read when it is also the newest, or when the newest's ``log_history`` is the start of the
      latest's (one run: an earlier state written again or copied later);
    * otherwise the newest is read: the latest holds another history, an earlier run's checkpoint left in an output
      folder reused by a shorter run (the Trainer deletes only the checkpoints it rotates).

    When the latest is not the newest, the notes name the file read and the one passed over (the usual folder, whose
    latest state was written last, gets no note; ``meta["trainer_state_file"]`` names the file either way).
    """
    if path.is_file():
        doc = load_json(path, progress)
        return path, _output_dir(path), _check_state(path, doc), []
    ckpts = _checkpoints(path)
    root = path / STATE_FILE
    candidates = ([root] if root.is_file() else []) + [p for _, p in ckpts]
    if not candidates:
        raise ImportFormatError(f"no {STATE_FILE} in {path} or its checkpoint-*/ folders; pass the file itself")
    if len(candidates) == 1:
        doc = load_json(candidates[0], progress)
        return candidates[0], _output_dir(candidates[0]), _check_state(candidates[0], doc), []
    docs: dict[Path, Any] = {}

    def state(p: Path) -> Any:
        if p not in docs:
            docs[p] = load_json(p)
        return docs[p]

    steps = {p: n for n, p in ckpts}
    if root.is_file():
        steps[root] = _global_step(state(root))
    latest = max(candidates, key=lambda p: steps[p])  # the first of equals: the root
    mtime = {p: p.stat().st_mtime for p in candidates}
    newest = max(candidates, key=lambda p: (mtime[p], p == latest))
    chosen = latest if newest == latest or _continues(state(latest), state(newest)) else newest

    def said(p: Path) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(mtime[p]))
        return f"{os.path.relpath(p, path)} (global step {steps[p]}, written {when})"

    notes: list[str] = []
    if newest != latest:  # the usual folder (the latest written last) needs no word: meta names the file read
        which = "the latest" if chosen == latest else "the newest"
        notes.append(f"read {said(chosen)}, {which} of {len(candidates)} trainer_state.json files")
        if chosen == latest:
            notes.append(f"passed over {said(newest)}, written later: its log history is the start of the one read")
        else:
            notes.append(
                f"passed over {said(latest)}: its log history is not the one read (an earlier run's checkpoint in a "
                f"reused output folder?); import that file to read it"
            )
    return chosen, _output_dir(chosen), _check_state(chosen, state(chosen)), notes


def _continues(long: Any, short: Any) -> bool:
    """Whether state ``short``'s log history is the start of state ``long``'s (both from one run)."""
    a = long.get("log_history") if isinstance(long, dict) else None
    b = short.get("log_history") if isinstance(short, dict) else None
    return isinstance(a, list) and isinstance(b, list) and len(b) <= len(a) and a[: len(b)] == b


def _global_step(doc: Any) -> int:
    return int(doc.get("global_step") or 0) if isinstance(doc, dict) else -1


def _output_dir(state_path: Path) -> Path:
    parent = state_path.parent
    return parent.parent if _CHECKPOINT.match(parent.name) else parent


def _check_state(path: Path, doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict) or not isinstance(doc.get("log_history"), list):
        raise ImportFormatError(f"{path}: no 'log_history' list; this is not a Trainer state file (pass --format)")
    if not doc["log_history"]:
        raise ImportFormatError(f"{path}: 'log_history' is empty (nothing was logged); nothing to read")
    return doc


def read_trainer_state(path: Path, step_column: str | None = None, progress: Progress | None = None) -> Parsed:
    """Series of a TRL/HF run, plus advantage statistics from ``completions/*.parquet`` when present."""
    state_path, out_dir, doc, found = locate(path, progress)
    frame = frame_from_records(state_path, doc["log_history"], what="log_history entry", null_is_nan=True)
    parsed = frame_to_series(frame, step_column)
    parsed.notes[:0] = found + frame.notes  # which state file was read; entries skipped (a null, a list)
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
        skipped: list[str] = []
        adv = completion_stats(files, skipped)
        if skipped:  # a TRL whose table names its columns otherwise: the log itself is still read
            parsed.notes.append(
                f"{len(skipped)} completions file(s) without 'step'/'advantage' columns passed over "
                f"(first: {skipped[0]}); no advantage statistics from them"
            )
        if "frac_reward_zero_std" in parsed.series:  # the trainer's own, over the whole batch, wins
            adv["completions/frac_zero_groups"] = adv.pop(M.ADV_FRAC_ZERO_GROUPS, (np.empty(0), np.empty(0)))
        for name, series in adv.items():
            if len(series[0]):
                parsed.series.setdefault(name, series)
        n = len(files) - len(skipped)
        parsed.meta["completions_files"] = n
        if n:
            parsed.notes.append(f"advantage statistics from {n} completions parquet file(s) in {comp_dir}")
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


def completion_stats(files: list[Path], skipped: list[str] | None = None) -> dict[str, Series]:
    """``adv/mean|std|min|max`` and ``adv/frac_zero_groups`` per step from TRL completions parquet files.

    A file without ``step``/``advantage`` columns is named in ``skipped`` and passed over (without ``skipped``: an
    ImportFormatError); an unreadable one is an ImportFormatError."""
    import pyarrow.parquet as pq

    per_step: dict[int, dict[str, float]] = {}
    for f in files:
        try:
            table = pq.read_table(f)
        except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ...
            raise ImportFormatError(f"{f}: not a readable parquet file ({e}); remove or re-export it") from None
        cols = set(table.column_names)
        if "advantage" not in cols or "step" not in cols:
            if skipped is None:
                raise ImportFormatError(f"{f}: no 'step'/'advantage' columns (has {', '.join(sorted(cols))})")
            skipped.append(f"{f.name} (columns: {', '.join(sorted(cols))})")
            continue
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


# --- the console log: dicts the HF Trainer printed -------------------------------------------------------------------
_BAR = re.compile(r"\|\s*(\d+)/(\d+)\s*\[")  # tqdm: "  2%|▏   | 5/200 [00:10<06:30,  2.00s/it]"
_NONFINITE = re.compile(r"(?<=: )(-?inf|nan)(?=[,}])")  # str(logs) writes float('nan') as nan: no Python literal
_NUMPY = re.compile(r"(?:np|numpy)\.\w+\(([^()]*)\)")  # np.float64(0.5), numpy >= 2's repr
_TRAINER_KEYS = frozenset({"loss", "entropy", "reward", "epoch", "eval_loss", "train_runtime", "learning_rate"})
_TRAINING_KEYS = ("loss", "entropy", "reward")  # an entry of the training loop (not evaluation, not the summary)


def console_entry(line: str) -> dict[str, Any] | None:
    """The flat dict an HF Trainer printed on ``line`` (``{'loss': 0.1, 'epoch': 0.5}``, maybe after a progress
    bar), or None."""
    start, end = line.find("{'"), line.rfind("}")
    if start < 0 or end < start:
        return None
    text = _NUMPY.sub(r"\1", _NONFINITE.sub(r"'\1'", line[start : end + 1]))
    try:
        obj = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) for k in obj):
        return None
    if any(isinstance(v, dict | list | tuple | set) for v in obj.values()) or not _TRAINER_KEYS & set(obj):
        return None
    return obj


def read_trl_console(path: Path, step_column: str | None = None, progress: Progress | None = None) -> Parsed:
    """Series from the dicts an HF/TRL Trainer printed into a console log, other lines ignored (counted)."""
    events: list[tuple[int, dict[str, Any]] | tuple[int, int]] = []  # (line, entry) or (N, M) of a progress bar
    other = 0
    handle = open_text(path, progress)
    try:
        for lineno, line in enumerate(handle, start=1):  # a \r ends a line too: a bar, then the entry after it
            entry = console_entry(line) if "{'" in line else None
            if entry is not None:
                events.append((lineno, entry))
                continue
            bars = _BAR.findall(line)
            if bars:
                events.append((int(bars[-1][0]), int(bars[-1][1])))
            else:
                other += line.strip() != ""
    except UnicodeDecodeError as e:
        raise ImportFormatError(f"{path} is not UTF-8 text ({e.reason}); save the log as UTF-8") from None
    finally:
        handle._h.close()
    frame, note = _console_frame(path, events)
    if frame.n_rows == 0:
        raise ImportFormatError(f"{path}: no dict printed by a Trainer ({{'loss': ...}}) found; pass --format")
    parsed = frame_to_series(frame, step_column or "step")
    parsed.meta["framework"] = "trl"  # a Trainer's console: its entropy is TRL's (as trainer_state.json's is)
    parsed.notes[:0] = [note] + ([f"ignored {other} console line(s) that are neither entries nor progress bars"]
                                 if other else [])  # fmt: skip
    return parsed


def _console_frame(path: Path, events: list[Any]) -> tuple[Frame, str]:
    """The entries as rows with their step, and the note saying where the steps came from."""
    total = None  # the training bar's M: the bar drawn last before the first training entry
    bar: tuple[int, int] | None = None
    for ev in events:
        if isinstance(ev[1], dict):
            if bar is not None and any(k in ev[1] for k in _TRAINING_KEYS):
                total = bar[1]
                break
        else:
            bar = ev
    frame = Frame(source=str(path))
    step = trained = 0
    for ev in events:
        if not isinstance(ev[1], dict):
            step = ev[0] if ev[1] == total else step
            continue
        lineno, entry = ev
        trained += any(k in entry for k in _TRAINING_KEYS)
        frame.add_row({**entry, "step": step if total is not None else trained}, f"line {lineno}")
    if total is not None:
        return frame, f"steps read from the training progress bar (N/{total}) drawn before each logged entry"
    return frame, (
        "no training progress bar in the log: steps are the order of the training entries (1, 2, ...), not the "
        "trainer's steps (logging_steps apart)"
    )
