"""The analysis API as a notebook user calls it (session 45's audit): what a caller passes either reads as the same
run the CLI reads, or is refused with one clear error naming the argument — never a traceback from inside the
library, never a silently different run; a live ``Analyzer`` agrees with post-hoc ``analyze`` when data for a step
arrives after its entropy was analysed."""

from __future__ import annotations

import numpy as np
import pytest

from entropy_watch.analysis import Analyzer, DetectorConfig, RunSeries, analyze, verdict
from entropy_watch.errors import EntropyWatchError
from entropy_watch.monitor import Monitor
from entropy_watch.synthetic import generate

from ._series import collapsing


def _h(n: int = 60) -> np.ndarray:
    """(n,) nats: flat at 2.0 for 20 points, then a steady fall to 0.05."""
    return np.r_[np.full(20, 2.0), np.linspace(2.0, 0.05, n - 20)]


def _same(a: RunSeries, b: RunSeries) -> bool:
    return analyze(a).verdict.to_dict() == analyze(b).verdict.to_dict()  # type: ignore[union-attr]


# --- what from_arrays accepts ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("steps", "entropy", "what"),
    [
        (5, 1.0, "steps"),  # a scalar
        (np.array(5), np.array(1.0), "steps"),  # 0-d arrays
        (np.arange(10).reshape(5, 2), np.ones((5, 2)), "steps"),  # a table
        (np.ones(10, dtype=bool), np.ones(10), "steps"),  # a mask, not steps
        (np.arange(10).astype("datetime64[s]"), np.ones(10), "steps"),  # timestamps, not steps
        (np.arange(10), np.ones(10) + 1j, "entropy"),  # complex
    ],
)
def test_a_wrong_shape_or_type_is_a_type_error_naming_the_argument(steps: object, entropy: object, what: str) -> None:
    with pytest.raises(TypeError, match=what):
        RunSeries.from_arrays("r", steps, entropy)  # type: ignore[arg-type]


def test_steps_with_a_fraction_are_refused_not_truncated_into_each_other() -> None:
    """Steps 0.0, 0.5, 1.0, ... truncated to int64 merged pairs of points (the last of each kept): refused, as the
    CSV importer skips a row whose step is not a whole number."""
    steps = np.arange(60) * 0.5
    with pytest.raises(ValueError, match="steps must be whole"):
        RunSeries.from_arrays("r", steps, _h())
    whole = RunSeries.from_arrays("r", np.arange(60.0), _h())  # 0.0, 1.0, ...: whole numbers, read as ints
    assert whole.steps.dtype == np.int64 and _same(whole, RunSeries.from_arrays("r", np.arange(60), _h()))
    with pytest.raises(ValueError, match="within int64"):
        RunSeries.from_arrays("r", [2**64 + i for i in range(60)], _h())


def test_a_generator_reads_as_its_values() -> None:
    h = _h()
    assert _same(
        RunSeries.from_arrays("r", (i for i in range(60)), (x for x in h)), RunSeries.from_arrays("r", range(60), h)
    )


def test_an_empty_series_and_a_step_before_the_first_are_too_short_not_a_crash() -> None:
    v = analyze(RunSeries.from_arrays("r", [], [])).verdict
    assert v is not None and v.health == "too-short" and v.n_points == 0 and v.step is None
    s = RunSeries.from_arrays("r", np.arange(10, 70), _h())
    early = verdict(s, at_step=3)
    assert early.health == "too-short" and early.n_points == 0


@pytest.mark.parametrize("at", ["300", True, float("nan"), np.datetime64(300, "s")])
def test_at_step_that_is_no_step_number_is_a_type_error(at: object) -> None:
    s = RunSeries.from_arrays("r", np.arange(60) * 10, _h())
    with pytest.raises(TypeError, match="at_step"):
        verdict(s, at_step=at)  # type: ignore[arg-type]


def test_reward_as_a_tuple_of_values_is_values_and_a_pair_is_steps_and_values() -> None:
    """A tuple of n rewards (``tuple(df.reward)``) was read as a (steps, values) pair and crashed; a 3-tuple had its
    third item silently dropped."""
    h, r = _h(), np.linspace(0.0, 1.0, 60)
    as_array = RunSeries.from_arrays("r", np.arange(60), h, reward=r)
    assert _same(RunSeries.from_arrays("r", np.arange(60), h, reward=tuple(r)), as_array)
    assert _same(RunSeries.from_arrays("r", np.arange(60), h, reward=(np.arange(60), r)), as_array)
    with pytest.raises(TypeError, match="reward"):
        RunSeries.from_arrays("r", np.arange(60), h, reward=(np.arange(60), r, r))
    with pytest.raises(TypeError, match="reward"):
        RunSeries.from_arrays("r", np.arange(60), h, reward=1.0)  # type: ignore[arg-type]
    with pytest.raises(EntropyWatchError, match="reward has 10 values for 60 steps"):
        RunSeries.from_arrays("r", np.arange(60), h, reward=r[:10])


def test_events_as_the_reader_returns_them_are_read_not_dropped() -> None:
    """``{"step", "kind"}`` dicts (``RunReader.events``) were unpacked as their keys ("step", "kind"): the LR change
    was silently ignored."""
    h = _h()
    tuples = RunSeries.from_arrays("r", np.arange(60), h, events=[(30, "lr_change")])
    dicts = RunSeries.from_arrays("r", np.arange(60), h, events=[{"step": 30, "kind": "lr_change", "payload": "{}"}])
    assert dicts.events == [(30, "lr_change")] and _same(dicts, tuples)
    assert not _same(tuples, RunSeries.from_arrays("r", np.arange(60), h))  # the event matters to this run
    with_payload = RunSeries.from_arrays("r", np.arange(60), h, events=[{"step": 30, "kind": "lr_change",
                                                                         "payload": {"lr": 1e-6}}])  # fmt: skip
    assert with_payload.changes[0]["payload"] == {"lr": 1e-6}
    assert RunSeries.from_arrays("r", np.arange(60), h, events=None).events == []


@pytest.mark.parametrize("events", [(30, "lr_change"), {30: "lr_change"}, "lr_change", [("lr_change", 30)]])
def test_events_in_another_shape_are_a_type_error(events: object) -> None:
    with pytest.raises(TypeError, match="events"):
        RunSeries.from_arrays("r", np.arange(60), _h(), events=events)  # type: ignore[arg-type]


def test_meta_that_is_not_a_dict_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="meta must be a dict"):
        RunSeries.from_arrays("r", np.arange(60), _h(), meta=[("vocab_size", 10)])  # type: ignore[arg-type]


@pytest.mark.parametrize("planned", [-1, 600.5, float("inf"), "x"])
def test_a_planned_steps_that_is_no_step_count_is_ignored_as_the_store_reader_ignores_it(planned: object) -> None:
    """The reader drops such a ``planned_steps`` from run.json (``analysis_meta``); from arrays it capped every
    forecast's horizon at 0 (-1: a collapse read as a solved task) or crashed (inf, "x")."""
    h, r = _h(), np.linspace(0.0, 1.0, 60)
    plain = RunSeries.from_arrays("r", np.arange(60), h, reward=r)
    assert _same(RunSeries.from_arrays("r", np.arange(60), h, reward=r, meta={"planned_steps": planned}), plain)


def test_numpy_numbers_in_meta_are_read_as_numbers() -> None:
    """``reward_max=np.int64(2)`` (a max taken over an int column) was ignored: the ceiling stayed 1 and a solved
    task read as a critical collapse."""
    n = 80
    h = np.r_[np.full(20, 2.0), np.linspace(2.0, 0.05, 60)]
    r = np.r_[np.linspace(0.0, 1.95, 60), np.full(20, 1.96)]
    stated = analyze(RunSeries.from_arrays("r", np.arange(n), h, reward=r, meta={"reward_max": 2})).verdict
    for value in (np.int64(2), np.float32(2.0)):
        v = analyze(RunSeries.from_arrays("r", np.arange(n), h, reward=r, meta={"reward_max": value})).verdict
        assert v == stated
    plan = RunSeries.from_arrays("r", np.arange(n), h, meta={"planned_steps": np.int64(100)})
    assert plan.meta["planned_steps"] == 100 and type(plan.meta["planned_steps"]) is int


# --- DetectorConfig ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("warmup_points", float("nan"), TypeError),
        ("hold_points", 3.5, TypeError),
        ("level_tol", None, TypeError),
        ("hold_z", "4", TypeError),
        ("log_eps_nats", float("nan"), ValueError),
        ("window_frac", float("inf"), ValueError),
        ("noise_points", 0, ValueError),
        ("cliff_ref_versions", 0, ValueError),
        ("persist_of", (3,), TypeError),
    ],
)
def test_a_config_value_the_detector_cannot_use_is_refused_at_construction(field: str, value: object,
                                                                           error: type) -> None:  # fmt: skip
    """Each was accepted and crashed inside ``analyze`` (IndexError, LinAlgError, ...)."""
    with pytest.raises(error, match=f"DetectorConfig.{field}"):
        DetectorConfig(**{field: value})  # type: ignore[arg-type]


def test_numpy_numbers_are_valid_config_values() -> None:
    assert DetectorConfig(warmup_points=np.int64(5), hold_z=np.float32(4.0)).min_points == 6  # type: ignore[arg-type]


# --- live and post hoc ---------------------------------------------------------------------------------------------
def _solved_collapse() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, entropy, reward) (n,): entropy collapses while the reward climbs to its ceiling (a solved task)."""
    h = collapsing(n=200, onset=60, tau=20.0, seed=1)
    r = np.clip(np.linspace(0.2, 1.3, 200), 0.0, 1.0)
    return np.arange(200), h, r


def test_a_reward_that_arrives_after_its_entropy_reads_as_post_hoc() -> None:
    """A trainer logs entropy and reward separately: a live poll can see entropy at a step before its reward. The
    Analyzer kept the collapse alerts it had decided with the older reward."""
    steps, h, r = _solved_collapse()
    live = Analyzer()
    for end in range(10, 200, 7):
        late = RunSeries.from_arrays("r", steps[:end], h[:end], reward=(steps[: end - 5], r[: end - 5]))
        live.analyze(late)
    whole = RunSeries.from_arrays("r", steps, h, reward=r)
    got = live.analyze(whole)
    want = analyze(whole)
    assert [a.to_dict() for a in got.alerts] == [a.to_dict() for a in want.alerts]
    assert got.verdict == want.verdict


def test_an_event_that_arrives_late_reads_as_post_hoc() -> None:
    steps, h, r = _solved_collapse()
    for late in ({"events": [(80, "lr_change")]},):
        live = Analyzer()
        live.analyze(RunSeries.from_arrays("r", steps[:150], h[:150], reward=r[:150]))
        whole = RunSeries.from_arrays("r", steps, h, reward=r, **late)  # type: ignore[arg-type]
        assert live.analyze(whole).verdict == analyze(whole).verdict, late


# --- synthetic and monitor --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "error", "what"),
    [
        (("healthy", 0, 100.0), TypeError, "n_steps"),
        (("healthy", None), TypeError, "seed"),
        (("healthy", -1), ValueError, "seed"),
        (("healthy", 0, 600, 0.1), TypeError, "noise"),
    ],
)
def test_generate_refuses_wrong_arguments_by_name(args: tuple, error: type, what: str) -> None:
    with pytest.raises(error, match=what):
        generate(*args)


class _NoRuns:
    """A reader with no runs (only what ``Monitor.poll`` calls)."""

    def versions(self) -> dict:
        return {}


def test_monitor_runs_given_one_name_follows_that_run_not_its_letters() -> None:
    waited: list[str] = []
    m = Monitor(_NoRuns(), runs="grpo-s0", on_waiting=lambda run, why: waited.append(run))  # type: ignore[arg-type]
    m.poll()
    assert waited == ["grpo-s0"]


@pytest.mark.parametrize("interval", [-1.0, float("nan"), "1"])
def test_monitor_refuses_an_interval_that_would_poll_without_pause(interval: object) -> None:
    with pytest.raises(ValueError, match="interval_s"):
        Monitor(_NoRuns()).follow(interval, iterations=2)  # type: ignore[arg-type]


def test_a_growing_import_note_keeps_a_live_analyzers_work() -> None:
    """A log being written grows its notes ("ignored N console lines") every poll: the notes are no input to the
    decisions, so the analyzer keeps its cached evaluations (it re-analysed the whole run every poll, 7x the time)."""
    sr = generate("fast_collapse", seed=0, n_steps=300)
    live = Analyzer()
    for n in (200, 201, 202):
        series = RunSeries.from_arrays("r", sr.steps[:n], sr.entropy[:n], meta={"import_notes": [f"ignored {n} lines"]})
        live.analyze(series)
        if n > 200:
            assert live._memo and live._fits, n  # kept from the call before
        assert live.analyze(series).verdict == analyze(series).verdict


@pytest.mark.parametrize(
    "field", [{"noise_points": 1}, {"cliff_ref_versions": 1}, {"bootstrap": 0}, {"cliff_stride": 10**19}]
)
def test_a_config_the_analysis_would_crash_on_is_refused(field: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(field))):
        DetectorConfig(**field)


def test_a_pass_fail_reward_is_read_as_0_and_1() -> None:
    rewards = np.arange(50) % 3 == 0
    s = RunSeries.from_arrays("r", np.arange(50), np.ones(50), reward=rewards)
    np.testing.assert_array_equal(s.reward(), rewards.astype(np.float64))
