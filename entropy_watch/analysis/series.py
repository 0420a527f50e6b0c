"""RunSeries: the time series one run's analysis reads, from the store, an imported log or plain arrays.

Everything is keyed by the logged step. Entropy (``entropy/mean``, nats per token) is the primary series; other
scalars (reward, covariance, clip fractions, ...) are kept by canonical name and aligned onto the entropy steps
causally (last observation carried forward), so a training reward logged every 5 steps still corroborates.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from entropy_watch import metrics as M
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


def _dedupe(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort by step and keep the LAST value logged for a repeated step (a restart re-logs its steps): arrays in log
    order from importers and callers. Store rows arrive already de-duplicated by the store's rule
    (``entropy_watch.store.reads.LATEST_FIRST``)."""
    steps = np.asarray(steps, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    if steps.shape != values.shape:
        raise EntropyWatchError(f"steps and values differ in length ({steps.shape[0]} vs {values.shape[0]})")
    rev_steps = steps[::-1]
    _, first_in_rev = np.unique(rev_steps, return_index=True)  # unique() sorts; index of last occurrence
    idx = len(steps) - 1 - first_in_rev
    return steps[idx], values[idx]


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
        self.meta = dict(self.meta or {})  # meta=None (as CONTRACTS allows) is no meta
        if self.events and not self.changes:
            self.changes = change_points({"step": s, "kind": k, "payload": "{}"} for s, k in self.events)
        self.steps, self.entropy = _dedupe(self.steps, self.entropy)
        self.scalars = {k: _dedupe(s, v) for k, (s, v) in self.scalars.items()}

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
        scalars: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
        **kwargs: Any,
    ) -> RunSeries:
        """Build from arrays; ``reward`` is either values at ``steps`` or its own (steps, values) pair."""
        sc = dict(scalars or {})
        if reward is not None:
            if isinstance(reward, tuple):
                sc[M.REWARD_MEAN] = (np.asarray(reward[0]), np.asarray(reward[1]))
            else:
                sc[M.REWARD_MEAN] = (np.asarray(steps), np.asarray(reward, dtype=np.float64))
        return cls(
            name=name, steps=np.asarray(steps), entropy=np.asarray(entropy, dtype=np.float64), scalars=sc, **kwargs
        )

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
        """The series as a live reader would have seen it when ``last_step`` was the newest step."""
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
    cfg = run_json.get("config")
    if isinstance(cfg, dict):
        for k in ("vocab_size", "planned_steps", "max_steps", "reward_max"):
            key = "planned_steps" if k == "max_steps" else k
            if cfg.get(k) is not None and key not in m:
                m[key] = cfg[k]
    if "planned_steps" in m:
        planned = _steps_count(m.pop("planned_steps"))
        if planned is not None:
            m["planned_steps"] = planned
    if "import_notes" in m:
        m["import_notes"] = note_texts(m["import_notes"])
    return m


def note_texts(notes: object) -> list[str]:
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


def _steps_count(value: object) -> int | None:
    """``value`` as a positive whole number of steps (600, 600.0, "600"), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        v = float(value)
    except ValueError:
        return None
    return int(v) if 0 < v < 2**62 and v == int(v) else None
