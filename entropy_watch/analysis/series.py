"""RunSeries: the time series one run's analysis reads, from the store, an imported log or plain arrays.

Everything is keyed by the logged step. Entropy (``entropy/mean``, nats per token) is the primary series; other
scalars (reward, covariance, clip fractions, ...) are kept by canonical name and aligned onto the entropy steps
causally (last observation carried forward), so a training reward logged every 5 steps still corroborates.
"""

from __future__ import annotations

import difflib
import json
import math
import numbers
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from entropy_watch import metrics as M
from entropy_watch.aliases import detect_canonical
from entropy_watch.analysis.advice import FACTS_KEY, run_facts
from entropy_watch.analysis.changes import KNOWN_CHANGE_KINDS, RESET_EVENT_KINDS, change_points
from entropy_watch.errors import EntropyWatchError, NoEntropySeries

if TYPE_CHECKING:
    from entropy_watch.importers import ImportedRun
    from entropy_watch.store.reads import RunReader

ENTROPY_SOURCES: tuple[str, ...] = (M.ENTROPY_MEAN, M.ENTROPY_SAMPLED_NLL)


def entropy_source(names: Iterable[str]) -> str | None:
    """The scalar a run's entropy is read from: the first of :data:`ENTROPY_SOURCES` among ``names`` (None: none)."""
    have = set(names)
    return next((n for n in ENTROPY_SOURCES if n in have), None)


REWARD_PART = re.compile(r"^(?:train/)?rewards/[^/]+/mean$")
"""TRL's per-function rewards (``rewards/<function>/mean``, ``train/`` in a W&B export): its ``reward`` is their
(weighted) sum, so their ranges tell the reward's ceiling (``corroborate.reward_parts_max``)."""


def reward_name(names: Iterable[str]) -> str | None:
    """The reward series the analysis reads among ``names``: the training reward mean (None: not logged).

    Evaluation metrics (``eval/pass@k``) are not read: they are logged every few hundred steps, and carried forward
    onto the entropy steps they would read as a plateau between evaluations; nor are they kept for stored or imported
    runs (:func:`analysed`), so a run built from arrays is judged as the same run read from the store."""
    return M.REWARD_MEAN if M.REWARD_MEAN in set(names) else None


def analysed(name: str) -> bool:
    """Whether the analysis reads the scalar ``name``: a canonical metric or a per-function reward."""
    return name in M.CANONICAL or REWARD_PART.match(name) is not None


"""Entropy series in order of preference: full-vocabulary mean, then the sampled-token NLL estimate."""


def _array(what: str, values: object, refused: str = "bcmMV") -> np.ndarray:
    """``values`` (a list, tuple, generator, pandas Series or numpy array of numbers) as a 1-D array, without
    converting its dtype; a clear ``TypeError`` naming ``what`` for a scalar, a table or an array of a dtype kind in
    ``refused`` (booleans, complex numbers, times, records)."""
    if isinstance(values, Iterator):
        values = list(values)  # a generator: np.asarray would wrap the generator object itself
    try:
        arr = np.asarray(values)
    except ValueError:  # numpy refuses a ragged nest ([1, [2, 3]], (steps, values, 1))
        raise TypeError(f"{what} must be a 1-D sequence of numbers (one per logged point), got a ragged nest") from None
    if arr.ndim != 1:
        shape = "a single value" if arr.ndim == 0 else f"an array of shape {arr.shape}"
        raise TypeError(f"{what} must be a 1-D sequence of numbers (one per logged point), got {shape}")
    if arr.dtype.kind in refused:
        kinds = {"b": "booleans", "c": "complex numbers", "m": "time differences", "M": "dates", "V": "records"}
        raise TypeError(f"{what} must hold numbers, got {kinds[arr.dtype.kind]} ({arr.dtype})")
    return arr


def step_array(steps: object, what: str = "steps") -> np.ndarray:
    """``steps`` as int64 (shape (n,)): whole numbers (ints, or floats such as 1.0) from 0 within int64, the store's
    steps (``store.schema.check_step``); a step with a fraction, NaN, below 0 or past int64 raises ``ValueError``
    naming ``what`` (truncating 0.5 to 0 would merge points; the store refuses a negative step and an import skips
    its row, so the same log read as arrays is refused rather than judged as another run)."""
    arr = _array(what, steps)
    if arr.dtype.kind == "i":
        whole = arr >= 0
    elif arr.dtype.kind == "u":
        whole = arr <= np.iinfo(np.int64).max
    else:
        try:
            f = arr.astype(np.float64)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{what} must hold whole step numbers, got {arr.dtype} values ({err})") from None
        whole = np.isfinite(f) & (f == np.round(f)) & (f >= 0) & (f < 2.0**63)
    if not whole.all():
        bad = arr[~whole][0]
        bad = bad.item() if isinstance(bad, np.generic) else bad  # an object array holds Python ints (2**64)
        negative = (arr if arr.dtype.kind in "iu" else f)[~whole][0] < 0
        why = " (the store refuses a negative step; an import skips its row)" if negative else ""
        raise ValueError(f"{what} must be whole step numbers from 0 within int64{why}, got {bad!r}")
    return arr.astype(np.int64, copy=False) if arr.dtype.kind in "iu" else f.astype(np.int64)


def value_array(values: object, what: str = "entropy") -> np.ndarray:
    """``values`` as float64 (shape (n,)); NaN and ±inf are kept (the guards read them). Booleans are values, 0 and 1
    (a pass/fail reward), not steps."""
    arr = _array(what, values, refused="cmMV")
    try:
        return arr.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{what} must hold numbers, got {arr.dtype} values ({err})") from None


def _dedupe(
    steps: np.ndarray, values: np.ndarray, what: tuple[str, str] = ("steps", "entropy")
) -> tuple[np.ndarray, np.ndarray]:
    """Sort by step and keep the LAST value logged for a repeated step (a restart re-logs its steps): arrays in log
    order from importers and callers. Store rows arrive already de-duplicated by the store's rule
    (``entropy_watch.store.reads.LATEST_FIRST``). ``what``: the arguments' names for an error message."""
    steps = step_array(steps, what[0])
    values = value_array(values, what[1])
    if steps.shape != values.shape:
        raise EntropyWatchError(
            f"{what[0]} and {what[1]} differ in length ({steps.shape[0]} vs {values.shape[0]}): pass one value per step"
        )
    rev_steps = steps[::-1]
    _, first_in_rev = np.unique(rev_steps, return_index=True)  # unique() sorts; index of last occurrence
    idx = len(steps) - 1 - first_in_rev
    return steps[idx], values[idx]


def event_rows(events: object) -> list[dict[str, Any]]:
    """A caller's ``events`` as rows ``{"step", "kind", "payload"}``: None (none), or a list or tuple of
    ``(step, kind)`` pairs or of dicts with ``step`` and ``kind`` (and optionally ``payload``: what
    ``RunReader.events`` returns). Anything else is a ``TypeError`` naming the argument; a step that is not a whole
    number a ``ValueError``."""
    if events is None:
        return []
    shape = "a list of (step, kind) pairs or of {'step', 'kind'} dicts"
    if isinstance(events, (str, bytes, Mapping)) or not isinstance(events, Iterable):
        raise TypeError(f"events must be {shape}, got {type(events).__name__}")
    rows: list[dict[str, Any]] = []
    for e in events:
        if isinstance(e, Mapping) and "step" in e and "kind" in e:
            step, kind, payload = e["step"], e["kind"], e.get("payload", "{}")
        elif isinstance(e, (tuple, list)) and len(e) == 2:
            (step, kind), payload = e, "{}"
        else:
            raise TypeError(f"events must be {shape}, got an item {e!r}")
        if not isinstance(kind, str):
            raise TypeError(f"events: the kind of an event must be a string (such as 'lr_change'), got {kind!r}")
        if payload is None or isinstance(payload, Mapping):
            payload = json.dumps(dict(payload or {}), default=str)
        rows.append({"step": int(step_array([step], "events' step")[0]), "kind": kind, "payload": payload})
    return rows


@dataclass
class RunSeries:
    """One run's series for analysis.

    ``steps`` (n,) int64 strictly increasing; ``entropy`` (n,) float64 nats (may hold NaN/inf: the guards see them);
    ``scalars`` maps canonical names to (steps, values) pairs at their own steps; ``hist`` is (steps (m,),
    counts (m, bins)) with ``hist_edges`` (bins,); ``events`` are (step, kind) known change points; ``meta`` holds
    ``vocab_size``, ``planned_steps`` and ``reward_max`` when known; ``entropy_name`` is the scalar the entropy was
    read from (:func:`entropy_source`); ``changes`` are the known change points with what their event said
    (:func:`~entropy_watch.analysis.changes.change_points`: "resume from checkpoint step 59"), for display — from the
    events alone, without payloads, where the series was built from arrays.
    """

    name: str
    steps: np.ndarray
    entropy: np.ndarray
    scalars: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    hist: tuple[np.ndarray, np.ndarray] | None = None
    hist_edges: np.ndarray | None = None
    events: list[tuple[int, str]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    entropy_name: str = M.ENTROPY_MEAN
    changes: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):  # the verdict's "run": a string in its JSON schema
            raise TypeError(f"name must be the run's name (a string), got {type(self.name).__name__}")
        if self.meta is not None and not isinstance(self.meta, Mapping):
            got = type(self.meta).__name__
            raise TypeError(f"meta must be a dict (vocab_size, planned_steps, reward_max), got {got}")
        self.meta = caller_meta(self.meta or {})  # meta=None (as CONTRACTS allows) is no meta
        rows = event_rows(self.events)
        self.events = [(r["step"], r["kind"]) for r in rows]
        if self.events and not self.changes:
            self.changes = change_points(rows)
        self.steps, self.entropy = _dedupe(self.steps, self.entropy)
        self.scalars = {k: _dedupe(s, v, (f"{k} steps", k)) for k, (s, v) in self.scalars.items()}

    def __len__(self) -> int:
        return int(self.steps.shape[0])

    # --- constructors ------------------------------------------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        name: str,
        steps: np.ndarray | list[int],
        entropy: np.ndarray | list[float],
        *,
        reward: tuple[np.ndarray, np.ndarray] | np.ndarray | list[float] | None = None,
        scalars: Mapping[str, tuple[np.ndarray, np.ndarray] | np.ndarray | list[float]] | None = None,
        hist: tuple[np.ndarray, np.ndarray] | None = None,
        hist_edges: np.ndarray | list[float] | None = None,
        **kwargs: Any,
    ) -> RunSeries:
        """Build from arrays: ``steps`` (n,) whole numbers from 0 (ints, or floats such as 1.0), ``entropy`` (n,)
        nats. ``reward`` and each of ``scalars`` (canonical name -> series, e.g. ``"clip/high_frac"``: the names
        :func:`analysed` reads) are either values at ``steps`` (n,) or their own ``(steps, values)`` pair (a tuple of
        two sequences). ``hist`` is the token-entropy histogram, ``(steps (m,), counts (m, bins))`` with
        ``hist_edges`` (bins,) increasing nats (:func:`entropy_watch.histogram.entropy_bin_edges`; bin 0 counts exact
        zeros). A wrong shape, type or value raises ``TypeError``/``ValueError`` naming the argument (a length that
        differs from its steps: ``EntropyWatchError``)."""
        steps = step_array(steps)
        sc = _scalar_arrays(scalars, steps)
        if reward is not None:
            sc[M.REWARD_MEAN] = _at_steps("reward", reward, steps)
        edges = None if hist_edges is None else _edges_array(hist_edges)
        if hist is not None:
            hist = _hist_arrays(hist, edges)
        return cls(name=name, steps=steps, entropy=value_array(entropy), scalars=sc, hist=hist, hist_edges=edges,
                   **kwargs)  # fmt: skip

    @classmethod
    def from_imported(cls, run: ImportedRun) -> RunSeries:
        """Build from an importer's :class:`ImportedRun` (canonical names; entropy required)."""
        src = entropy_source(run.scalars)
        if src is None:
            raise EntropyWatchError(
                f"{run.source}: no entropy series found (looked for {', '.join(ENTROPY_SOURCES)}); "
                "pass a column mapping such as --map entropy/mean=COLUMN"
            )
        steps, values = run.scalars[src]
        others = {k: v for k, v in run.scalars.items() if k != src and analysed(k)}
        meta = dict(run.meta)
        meta.setdefault("source", run.source)
        meta["import_notes"] = list(run.notes)  # as the store keeps them in run.json
        events = sorted((int(e["step"]), str(e["kind"])) for e in run.events)  # as the store would hold them
        return cls(name=run.name, steps=steps, entropy=values, scalars=others, events=events, meta=meta,
                   entropy_name=src, changes=change_points(run.events))  # fmt: skip

    @classmethod
    def from_reader(cls, reader: RunReader, run: str) -> RunSeries:
        """Read one run through the store's read interface (``Store`` or ``TailReader``): entropy, the canonical
        scalars, the histogram and the events (one value per step by the store's de-duplication rule)."""
        meta = reader.run_meta(run)
        names = reader.scalar_names(run)
        src = entropy_source(names)
        if src is None:
            raise NoEntropySeries(f"run {run!r} has no entropy series yet ({', '.join(ENTROPY_SOURCES)})")
        data = reader.series_many(run, [n for n in names if n == src or analysed(n)])
        steps, values = data.pop(src)
        edges = hist_edges(meta)
        hist = reader.hist_matrix(run, len(edges)) if edges else None
        rows = reader.events(run)
        return cls(
            name=run,
            steps=steps,
            entropy=values,
            scalars=data,
            hist=hist,
            hist_edges=np.asarray(edges, dtype=np.float64) if edges else None,
            events=sorted((int(e["step"]), str(e["kind"])) for e in rows),
            meta=analysis_meta(meta),
            entropy_name=src,
            changes=change_points(rows),
        )

    # --- views -------------------------------------------------------------------------------------------------
    def prefix(self, last_step: int) -> RunSeries:
        """The series as a live reader would have seen it when ``last_step`` was the newest step (a number of steps;
        before the first step: an empty series)."""
        if isinstance(last_step, (bool, np.bool_)) or not isinstance(last_step, numbers.Real) or math.isnan(last_step):
            raise TypeError(f"at_step must be a step number (an int), got {last_step!r}")
        keep = self.steps <= last_step
        sc = {k: (s[s <= last_step], v[s <= last_step]) for k, (s, v) in self.scalars.items()}
        hist = None
        if self.hist is not None:
            hs, hc = self.hist
            hist = (hs[hs <= last_step], hc[hs <= last_step])
        return RunSeries(
            name=self.name,
            steps=self.steps[keep],
            entropy=self.entropy[keep],
            scalars=sc,
            hist=hist,
            hist_edges=self.hist_edges,
            events=[e for e in self.events if e[0] <= last_step],
            meta=dict(self.meta),
            entropy_name=self.entropy_name,
            changes=[c for c in self.changes if c["step"] <= last_step],
        )

    def aligned(self, name: str) -> np.ndarray | None:
        """Scalar ``name`` on the entropy steps, last observation carried forward (causal); None if absent."""
        if name not in self.scalars:
            return None
        s, v = self.scalars[name]
        ok = np.isfinite(v)
        s, v = s[ok], v[ok]
        if s.size == 0:
            return None
        idx = np.searchsorted(s, self.steps, side="right") - 1
        out = np.where(idx >= 0, v[np.clip(idx, 0, None)], np.nan)
        return out.astype(np.float64)

    def reward(self) -> np.ndarray | None:
        """The reward the analysis reads (:func:`reward_name`) on the entropy steps; None when not logged."""
        name = reward_name(self.scalars)
        return None if name is None else self.aligned(name)

    def reset_steps(self) -> list[int]:
        """Steps of the change points at which baselines restart (``RESET_EVENT_KINDS``)."""
        return sorted({s for s, k in self.events if k in RESET_EVENT_KINDS})

    def change_steps(self) -> list[int]:
        """Steps of every known change point (``KNOWN_CHANGE_KINDS``): a cliff logged with one is explained."""
        return sorted({s for s, k in self.events if k in KNOWN_CHANGE_KINDS})


def analysis_meta(run_json: dict[str, Any]) -> dict[str, Any]:
    """What the detector reads from a run's ``run.json``: ``vocab_size``, ``planned_steps`` and ``reward_max``, taken
    from the top level or, failing that, from the stored config (where a trainer's ``max_steps`` means
    ``planned_steps``); and an imported run's ``import_notes`` (what reading its log decided), which the verdict's
    notes open with. ``run.json`` is data any writer chose: a ``planned_steps`` that is not a whole number of
    steps is left out (as a vocabulary size or reward ceiling that is not a number is, where they are read), and the
    notes are text, one per list item (a single string is one note)."""
    keys = ("vocab_size", "planned_steps", "reward_max", "import_notes")
    m = {k: run_json[k] for k in keys if run_json.get(k) is not None}
    facts = run_facts(run_json)  # the trainer and its settings, for the alerts' actions (analysis/advice.py)
    if facts:
        m[FACTS_KEY] = facts
    cfg = run_json.get("config")
    if isinstance(cfg, dict):
        for k in ("vocab_size", "planned_steps", "max_steps", "reward_max"):
            key = "planned_steps" if k == "max_steps" else k
            if cfg.get(k) is not None and key not in m:
                m[key] = cfg[k]
    return caller_meta(m)


def _note_texts(notes: object) -> list[str]:
    """Import notes as text, one per item of a list or tuple (a single value, a string included, is one note; None
    none): ``run.json`` holds whatever its writer put there."""
    if notes is None:
        return []
    return [str(n) for n in notes] if isinstance(notes, (list, tuple)) else [str(notes)]


def hist_edges(run_json: dict[str, Any]) -> list[float] | None:
    """The run's token-entropy histogram bin edges (``run.json``'s ``hist_edges``): None when absent or not a
    non-empty list of numbers (a hand-edited or foreign ``run.json`` loses its histogram, never its analysis)."""
    edges = run_json.get("hist_edges")
    if not isinstance(edges, list) or not edges:
        return None
    if not all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in edges):
        return None
    return [float(e) for e in edges]


def _at_steps(what: str, series: object, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A caller's ``reward`` or scalar ``what``: values at ``steps`` (n,), or a ``(steps, values)`` pair."""
    if _is_pair(series):
        pair: tuple[Any, Any] = series  # type: ignore[assignment]
        return step_array(pair[0], f"{what} steps"), value_array(pair[1], what)
    values = value_array(series, what)
    if values.shape != steps.shape:
        raise EntropyWatchError(
            f"{what} has {values.size} values for {steps.size} steps: pass one per step, "
            "or a (steps, values) pair for one logged at other steps"
        )
    return steps, values


def _scalar_arrays(scalars: object, steps: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A caller's ``scalars``: canonical names (:func:`analysed`) to values at ``steps`` or (steps, values) pairs.
    A name the analysis does not read is refused, not kept unread (``"reward"`` for ``"reward/mean"``)."""
    if scalars is None:
        return {}
    if not isinstance(scalars, Mapping):
        raise TypeError(f"scalars must be a dict of metric name -> (steps, values), got {type(scalars).__name__}")
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, series in scalars.items():
        if not isinstance(name, str):
            raise TypeError(f"scalars: a name must be a string such as {M.REWARD_MEAN!r}, got {name!r}")
        if not analysed(name):
            known = list(detect_canonical([name])) or difflib.get_close_matches(name, M.CANONICAL, n=1)
            hint = f"did you mean {known[0]!r}? " if known else ""  # a trainer's name ("reward", "kl")
            raise ValueError(
                f"scalars: {name!r} is no metric the analysis reads; {hint}the names are entropy_watch.metrics's "
                f"canonical ones (such as {M.REWARD_MEAN!r}, {M.CLIP_HIGH_FRAC!r}) and rewards/<function>/mean"
            )
        out[name] = _at_steps(name, series, steps)
    return out


def _edges_array(edges: object) -> np.ndarray:
    """A caller's ``hist_edges`` as float64 (bins,): finite, increasing nats."""
    arr = value_array(edges, "hist_edges")
    if arr.size < 2 or not np.isfinite(arr).all() or (np.diff(arr) <= 0).any():
        raise ValueError(
            "hist_edges must be at least 2 finite, increasing bin edges in nats "
            "(entropy_watch.histogram.entropy_bin_edges(vocab_size))"
        )
    return arr


def _hist_arrays(hist: object, edges: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """A caller's ``hist``, ``(steps (m,), counts (m, bins))`` with ``bins == len(edges)``, as (int64, float64)
    sorted by step, the last row kept for a repeated step (as the scalars); counts finite and not negative."""
    shape = "a (steps, counts) pair: steps (m,) and counts (m, bins), one count per hist_edges value"
    if not isinstance(hist, (tuple, list)) or len(hist) != 2:
        raise TypeError(f"hist must be {shape}, got {type(hist).__name__}")
    if edges is None:
        raise ValueError("hist needs hist_edges: the bin edges (nats) its counts are over")
    steps = step_array(hist[0], "hist steps")
    counts = np.asarray(hist[1])
    if counts.ndim != 2 or counts.dtype.kind in "bcmMV":
        got = f"shape {counts.shape}" if counts.ndim != 2 else f"{counts.dtype} values"
        raise TypeError(f"hist counts must be a 2-D array of numbers (m steps, bins), got {got}")
    try:
        counts = counts.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"hist counts must hold numbers, got {counts.dtype} values ({err})") from None
    if counts.shape != (steps.size, edges.size):
        raise EntropyWatchError(
            f"hist counts have shape {counts.shape} for {steps.size} hist steps and {edges.size} hist_edges: "
            "pass one row per step and one count per edge (bin 0 counts exact zeros)"
        )
    bad = ~(np.isfinite(counts) & (counts >= 0)).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"hist counts must be finite token counts, not negative: the row of step {steps[i]} is not")
    if steps.size and not (np.diff(steps) > 0).all():
        _, first_in_rev = np.unique(steps[::-1], return_index=True)
        idx = steps.size - 1 - first_in_rev
        steps, counts = steps[idx], counts[idx]
    return steps, counts


def _is_pair(reward: object) -> bool:
    """Whether ``reward`` is a ``(steps, values)`` pair: a tuple of two sequences (a tuple of numbers is values)."""
    return isinstance(reward, tuple) and len(reward) == 2 and all(_ndim(r) >= 1 for r in reward)


def _ndim(x: object) -> int:
    """``np.ndim(x)``; 1 for a ragged nest (numpy refuses it: :func:`_array` says so, naming the argument)."""
    try:
        return int(np.ndim(x))
    except ValueError:
        return 1


def caller_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """A series' ``meta`` as the analysis reads it, one rule however the run arrives (arrays, a log, a store's
    run.json: :func:`analysis_meta`), so the same run gets the same verdict: ``planned_steps`` kept only as a positive
    whole number of steps, ``import_notes`` a list of texts."""
    out = dict(meta)
    if "planned_steps" in out:
        planned = _steps_count(out.pop("planned_steps"))
        if planned is not None:
            out["planned_steps"] = planned
    if "import_notes" in out:
        out["import_notes"] = _note_texts(out["import_notes"])
    return out


def _steps_count(value: object) -> int | None:
    """``value`` as a positive whole number of steps (600, 600.0, np.int64(600), "600"), or None."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        return None
    try:
        v = float(value)
    except ValueError:
        return None
    return int(v) if math.isfinite(v) and 0 < v < 2**62 and v == int(v) else None
