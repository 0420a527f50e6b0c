"""The analysis as a notebook user holds it (session 46's audit): a step the store refuses is refused by
``from_arrays`` too; ``hist=`` and ``scalars=`` are checked like the other arguments; alerts are immutable values,
so one result (or a live ``Analyzer``'s earlier verdict) can never change another's; results and alerts compare,
hash, pickle and export to JSON as values."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle

import numpy as np
import pytest

from entropy_watch import metrics as M
from entropy_watch.analysis import Alert, Analyzer, RunSeries, analyze
from entropy_watch.errors import EntropyWatchError
from entropy_watch.histogram import entropy_bin_edges
from entropy_watch.jsonable import to_jsonable
from entropy_watch.store.schema import check_step

from ._series import collapsing


def _h(n: int = 60) -> np.ndarray:
    """(n,) nats: flat at 2.0 for 20 points, then a steady fall to 0.05 (a collapse: warning and critical)."""
    return np.r_[np.full(20, 2.0), np.linspace(2.0, 0.05, n - 20)]


def _collapse() -> RunSeries:
    return RunSeries.from_arrays("r", np.arange(60), _h(), reward=np.linspace(0.2, 0.5, 60))


# --- negative steps ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "what"),
    [
        ({"steps": np.arange(-10, 50)}, "steps"),
        ({"steps": np.arange(-10.0, 50.0)}, "steps"),
        ({"reward": (np.arange(-1, 59), np.ones(60))}, "reward steps"),
        ({"scalars": {M.CLIP_HIGH_FRAC: (np.arange(-1, 59), np.ones(60))}}, "clip/high_frac steps"),
        ({"events": [(-5, "lr_change")]}, "events' step"),
    ],
)
def test_a_negative_step_is_refused_as_the_store_refuses_it(kwargs: dict, what: str) -> None:
    """A step below 0 was analysed (a run from step -10 read as a collapse) while the store refuses it and an
    import skips its row: the same log gave a verdict from arrays and another (or none) from the CLI."""
    with pytest.raises(ValueError, match="out of range"):
        check_step(-1)
    args = {"steps": np.arange(60), **kwargs}
    with pytest.raises(ValueError, match=f"{what} must be whole step numbers from 0.*negative step"):
        RunSeries.from_arrays("r", args.pop("steps"), _h(), **args)


# --- hist= and scalars= ----------------------------------------------------------------------------------------------
EDGES = entropy_bin_edges(1000)


@pytest.mark.parametrize(
    ("hist", "edges", "error", "match"),
    [
        ("counts", EDGES, TypeError, "hist must be a \\(steps, counts\\) pair"),
        ((np.arange(60),), EDGES, TypeError, "hist must be"),
        ((np.arange(60), np.ones(60)), EDGES, TypeError, "hist counts must be a 2-D array"),
        ((np.arange(60), np.ones((50, EDGES.size))), EDGES, EntropyWatchError, "shape \\(50, 65\\) for 60 hist steps"),
        ((np.arange(60), np.ones((60, 3))), EDGES, EntropyWatchError, "one count per edge"),
        ((np.arange(60), np.full((60, EDGES.size), np.nan)), EDGES, ValueError, "hist counts must be finite"),
        ((np.arange(60), -np.ones((60, EDGES.size))), EDGES, ValueError, "not negative"),
        ((np.arange(60), np.ones((60, EDGES.size), dtype=bool)), EDGES, TypeError, "hist counts"),
        ((np.arange(60) - 1, np.ones((60, EDGES.size))), EDGES, ValueError, "hist steps"),
        ((np.arange(60), np.ones((60, EDGES.size))), None, ValueError, "hist needs hist_edges"),
        ((np.arange(60), np.ones((60, 3))), [0.0, 1.0, np.nan], ValueError, "hist_edges must be"),
        ((np.arange(60), np.ones((60, 3))), [0.0, 2.0, 1.0], ValueError, "increasing"),
    ],
)
def test_a_wrong_hist_is_one_error_naming_it(hist: object, edges: object, error: type, match: str) -> None:
    """Each was accepted: a crash deep in the analysis (IndexError, unpacking) or a histogram read as garbage."""
    with pytest.raises(error, match=match):
        RunSeries.from_arrays("r", np.arange(60), _h(), hist=hist, hist_edges=edges)  # type: ignore[arg-type]


def test_hist_rows_in_any_order_read_as_the_same_run() -> None:
    """The histogram's reference was its first rows in the order given: shuffled rows (a groupby's order) lost the
    collapse's corroboration by the token histogram."""
    h = collapsing(400, onset=150, tau=120.0)
    steps = np.arange(400)
    counts = np.zeros((400, EDGES.size))
    counts[:, 40] = 100
    counts[200:, 0] = 300  # most tokens become exact zeros half way
    ordered = analyze(RunSeries.from_arrays("r", steps, h, hist=(steps, counts), hist_edges=EDGES))
    assert any("histogram" in a.message for a in ordered.alerts)  # the histogram matters to this run
    perm = np.random.default_rng(0).permutation(400)
    shuffled = RunSeries.from_arrays("r", steps, h, hist=(steps[perm], counts[perm]), hist_edges=EDGES)
    assert shuffled.hist is not None and np.array_equal(shuffled.hist[0], steps)
    assert analyze(shuffled).verdict == ordered.verdict


@pytest.mark.parametrize(
    ("scalars", "error", "match"),
    [
        ([(M.CLIP_HIGH_FRAC, np.ones(60))], TypeError, "scalars must be a dict"),
        ({1: np.ones(60)}, TypeError, "scalars: a name must be a string"),
        ({"reward": np.ones(60)}, ValueError, "'reward' is no metric the analysis reads; did you mean 'reward/mean'"),
        ({M.CLIP_HIGH_FRAC: (np.arange(60), np.ones(60), 1)}, TypeError, "clip/high_frac must be a 1-D sequence"),
        ({M.CLIP_HIGH_FRAC: (np.arange(60), [1, [2, 3]])}, TypeError, "clip/high_frac must be a 1-D sequence"),
        ({M.CLIP_HIGH_FRAC: np.ones(10)}, EntropyWatchError, "clip/high_frac has 10 values for 60 steps"),
    ],
)
def test_wrong_scalars_are_one_error_naming_the_argument(scalars: object, error: type, match: str) -> None:
    """A list, a non-string name, a 3-tuple or values at the entropy steps crashed with a bare unpacking or regex
    error; a name the analysis does not read ("reward") was kept and never read: a reward plateau went unseen."""
    with pytest.raises(error, match=match):
        RunSeries.from_arrays("r", np.arange(60), _h(), scalars=scalars)  # type: ignore[arg-type]


def test_a_scalar_at_the_entropy_steps_reads_as_its_pair() -> None:
    clip = np.linspace(0.0, 0.2, 60)
    at_steps = RunSeries.from_arrays("r", np.arange(60), _h(), scalars={M.CLIP_HIGH_FRAC: clip})
    pair = RunSeries.from_arrays("r", np.arange(60), _h(), scalars={M.CLIP_HIGH_FRAC: (np.arange(60), clip)})
    np.testing.assert_array_equal(at_steps.aligned(M.CLIP_HIGH_FRAC), clip)
    assert analyze(at_steps) == analyze(pair)


# --- alerts are immutable values -----------------------------------------------------------------------------------
def test_an_alert_cannot_be_changed_so_no_result_changes_another() -> None:
    """Alerts were shared mutable objects: changing one in a result changed its verdict's; a live Analyzer kept
    them between calls, so it changed every later verdict too; ``to_dict()``'s evidence was the alert's own dict."""
    live = Analyzer()
    earlier = live.analyze(_collapse().prefix(50))
    alert = next(a for a in earlier.alerts if a.kind == "collapse")
    with pytest.raises(dataclasses.FrozenInstanceError):
        alert.severity = "info"  # type: ignore[misc]
    with pytest.raises(TypeError, match="read-only"):
        alert.evidence["h_now"] = 9.0
    with pytest.raises(TypeError, match="read-only"):
        alert.actions.append("ignore it")
    with pytest.raises(TypeError, match="read-only"):
        alert.evidence["corroboration"]["reward_plateau"] = True  # nested too
    d = alert.to_dict()
    d["evidence"]["h_now"], d["actions"][0] = 9.0, "ignore it"  # a copy: the caller's to change
    assert alert.evidence["h_now"] != 9.0 and alert.actions[0] != "ignore it"
    assert live.analyze(_collapse()).verdict == analyze(_collapse()).verdict
    changed = dataclasses.replace(alert, severity="critical", evidence={**alert.evidence, "h_now": 9.0})
    assert changed.evidence["h_now"] == 9.0 and alert.severity == "warning"


def test_alerts_and_verdicts_hash_and_results_compare_by_value() -> None:
    """Alerts were unhashable (no set of alerts, and so no hash of a frozen Verdict); two analyses of one run
    compared unequal or raised 'truth value of an array is ambiguous'."""
    a, b = analyze(_collapse()), analyze(_collapse())
    assert a == b and a.verdict == b.verdict and hash(a.verdict) == hash(b.verdict)
    assert len({*a.alerts, *b.alerts}) == len(a.alerts) > 1
    assert {a.verdict, b.verdict} == {a.verdict}
    other = analyze(RunSeries.from_arrays("r", np.arange(60), _h()[::-1].copy()))
    assert other != a and other.verdict != a.verdict


def test_results_pickle_and_copy_as_values() -> None:
    res = analyze(_collapse())
    for back in (pickle.loads(pickle.dumps(res)), copy.deepcopy(res), copy.copy(res)):
        assert back == res and back.verdict == res.verdict
        with pytest.raises(TypeError, match="read-only"):
            back.alerts[0].evidence["h_now"] = 9.0


def test_a_verdict_and_its_alerts_export_to_json_in_their_schema_and_back() -> None:
    """``to_jsonable(verdict)`` wrote the dataclass' fields (no "schema", no alert "key"), not the documented
    ``to_dict()`` form that ``show --json`` writes."""
    v = analyze(_collapse()).verdict
    assert v is not None
    exported = json.loads(json.dumps(to_jsonable(v), allow_nan=False))
    assert exported == v.to_dict() and exported["schema"] == 1
    assert json.loads(json.dumps(to_jsonable(v.alerts[0]))) == v.alerts[0].to_dict()
    for a in v.alerts:
        row = json.loads(json.dumps(a.to_row(wall_time=0.0)))
        assert Alert.from_row(row) == a


# --- wrong types at the entry points -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda s: analyze(s.entropy), "series must be a RunSeries"),  # the array instead of the series
        (lambda s: Analyzer().verdict(None, at_step=10), "series must be a RunSeries"),  # type: ignore[arg-type]
        (lambda s: analyze(s, config={"hold_z": 3.0}), "config must be a DetectorConfig"),  # type: ignore[arg-type]
        (lambda s: analyze(s, progress=10), "progress must be a function"),  # type: ignore[arg-type]
        (lambda s: RunSeries.from_arrays(None, s.steps, s.entropy), "name must be"),  # type: ignore[arg-type]
    ],
)
def test_a_wrong_type_at_an_entry_point_is_a_type_error_saying_what_is_wanted(call: object, match: str) -> None:
    """Each was an AttributeError from inside the library ('dict' object has no attribute 'reward_max'), or (a
    name that is no string) a verdict whose "run" broke its JSON schema."""
    with pytest.raises(TypeError, match=match):
        call(_collapse())  # type: ignore[operator]
