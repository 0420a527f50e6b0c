"""L4 corroboration: flags, the entropy-reward law, context (never severity), saturation, standalone diagnostics."""

from __future__ import annotations

import numpy as np

from entropy_watch import metrics as M
from entropy_watch.analysis import Alert, DetectorConfig, analyze_series
from entropy_watch.analysis.corroborate import flags, mechanism_flags
from entropy_watch.analysis.hygiene import prepare
from entropy_watch.histogram import entropy_bin_edges

from ._series import collapsing, noisy, series


def _flags(s, i=None):  # type: ignore[no-untyped-def]
    cfg = DetectorConfig()
    p = prepare(s, cfg)
    i = len(p) - 1 if i is None else i
    return flags(s, p, i, max(0, i - 199), cfg)


def test_entropy_reward_law_fit_and_headroom() -> None:
    h = collapsing(400, onset=100)
    r = 0.8 - 0.3 * np.expm1(h) + np.random.default_rng(0).normal(0, 0.005, h.size)
    fl = _flags(series(h, reward=r))
    law = fl["law"]
    assert law["applicable"] and law["r2"] > 0.9
    assert abs(law["a"] - 0.3) < 0.05 and abs(law["ceiling"] - 0.8) < 0.03
    assert fl["law_headroom_low"] is True
    # a reward unrelated to entropy: the law is marked not applicable
    fl2 = _flags(series(h, reward=np.random.default_rng(1).uniform(0, 1, h.size)))
    assert fl2["law"]["applicable"] is False and fl2["law_headroom_low"] is False


def test_improving_reward_is_no_plateau_and_saturation_is_detected() -> None:
    h = collapsing(300)
    fl = _flags(series(h, reward=np.linspace(0.1, 0.9, 300)))
    assert fl["reward_plateau"] is False and fl["reward_saturated"] is False
    assert _flags(series(h, reward=np.full(300, 1.0)))["reward_saturated"] is True
    # ~0.9-1.0 with misses is a plateau near the top, not a solved task (the rho2.00 run)
    near = np.clip(0.93 + np.random.default_rng(2).normal(0, 0.05, 300), 0, 1)
    assert _flags(series(h, reward=near))["reward_saturated"] is False
    # a reward above 1 (a sum of two reward functions): its ceiling is unknown, not the largest reward seen (a
    # plateau sits at its own maximum), so the task is not judged solved — until the run states its reward_max
    two = _flags(series(h, reward=np.full(300, 2.0)))
    assert two["reward_saturated"] is False and two["reward_ceiling"] is None
    cfg = DetectorConfig(reward_max=2.0)
    s = series(h, reward=np.full(300, 2.0))
    assert flags(s, prepare(s, cfg), 299, 100, cfg)["reward_saturated"] is True
    flat = 0.6 + np.random.default_rng(0).normal(0, 0.02, 300)
    assert _flags(series(h, reward=flat))["reward_plateau"] is True
    # a creep of 0.1% of the scale per 100 points passes the trend test but is no climb: the same definition as the
    # decline rule's (test_collapse)
    creep = 0.6 + 1e-5 * np.arange(300.0)
    assert _flags(series(h, reward=creep))["reward_plateau"] is True


def test_mechanism_flags_pg_drive_and_clip_onpolicy() -> None:
    n = 100
    h = np.full(n, 0.5)
    sc = {M.COV_PG_DRIVE: (np.arange(n), np.full(n, 0.01)), M.CLIP_HIGH_FRAC: (np.arange(n), np.full(n, 0.05)),
          M.CLIP_LOW_FRAC: (np.arange(n), np.full(n, 0.01))}  # fmt: skip
    fl = mechanism_flags(series(h, scalars=sc), n - 1, 0, DetectorConfig())
    assert fl["pg_drive_positive"] is True and fl["clip_high_dominates"] is True
    sc[M.CLIP_ONPOLICY] = (np.arange(n), np.ones(n))
    fl = mechanism_flags(series(h, scalars=sc), n - 1, 0, DetectorConfig())
    assert str(fl["clip_high_dominates"]).startswith("n/a")


def test_hist_drift_from_the_token_histogram() -> None:
    edges = entropy_bin_edges(1000)
    steps = np.arange(100)
    counts = np.zeros((100, len(edges)))
    counts[:, 40] = 100
    counts[50:, 0] = 300  # half the run: most tokens become exact zeros
    s = series(np.full(100, 0.5), hist=(steps, counts), hist_edges=edges)
    fl = _flags(s)
    assert fl["hist_drift"] is True and fl["frac_low_now"] > fl["frac_low_ref"] + 0.5


def test_corroboration_is_named_never_escalates_and_saturation_downgrades() -> None:
    h = collapsing(500, onset=150, tau=120.0)
    base = [a for a in analyze_series(series(h)) if a.kind == "collapse"]
    assert base[0].severity == "warning"
    r = 0.6 + np.random.default_rng(0).normal(0, 0.02, h.size)  # reward stopped improving
    corr = [a for a in analyze_series(series(h, reward=r)) if a.kind == "collapse"]
    assert corr[0].severity == "warning" and corr[0].step == base[0].step  # context, not severity
    assert "reward_plateau" in corr[0].evidence["corroborated_by"] and "reward plateau" in corr[0].message
    sat = analyze_series(series(h, reward=np.full(h.size, 1.0)))
    assert not [a for a in sat if a.kind == "collapse"]
    assert {a.severity for a in sat if a.kind == "saturation"} == {"info"}


def test_precision_bias_and_zero_variance_groups_alerts() -> None:
    n = 120
    rng = np.random.default_rng(0)
    sc = {M.RATIO_LOG_MEAN: (np.arange(n), np.abs(rng.normal(2e-3, 5e-4, n))),
          M.ADV_FRAC_ZERO_GROUPS: (np.arange(n), np.full(n, 0.7))}  # fmt: skip
    al = analyze_series(series(noisy(np.full(n, 0.6), 0.02), reward=np.full(n, 0.1), scalars=sc))
    kinds = {a.kind: a for a in al}
    assert kinds["precision"].severity == "warning" and "bf16" in kinds["precision"].message
    assert kinds["zero_variance_groups"].severity == "warning" and "all wrong" in kinds["zero_variance_groups"].message
    assert kinds["precision"].step == DetectorConfig().warmup_points  # short logs decide from the 6th point
    # the same groups on a run whose reward is high: the prompts are too easy (info), not a failing run
    easy = analyze_series(series(noisy(np.full(n, 0.6), 0.02), reward=np.full(n, 0.9), scalars=sc))
    assert {a.severity for a in easy if a.kind == "zero_variance_groups"} == {"info"}
    signed = {M.RATIO_LOG_MEAN: (np.arange(n), rng.normal(0, 2e-3, n))}
    assert not [
        a for a in analyze_series(series(noisy(np.full(n, 0.6), 0.02), scalars=signed)) if a.kind == "precision"
    ]


def test_a_reward_on_another_scale_never_excuses_a_collapse_unless_its_maximum_is_stated() -> None:
    """A collapse while the reward sits on a plateau near its own maximum was read as "the task looks solved" when
    the reward went above 1 (the ceiling was the largest reward seen): a TRL reward summed over two reward functions,
    or shifted, hid real collapses (Deep-GRPO gamma2.0 with the reward doubled, Sunshine best_static shifted by 5).
    Above 1 the ceiling is unknown: the collapse stays a collapse, a note says why and how to state the maximum; with
    ``reward_max`` in the run's meta (run.json, ``--reward-max``) a solved task is benign again, as on a 0-1 scale."""
    from dataclasses import replace

    from entropy_watch.analysis import analyze
    from entropy_watch.synthetic import generate

    def kinds(s):  # type: ignore[no-untyped-def]
        res = analyze(s)
        return {a.kind for a in res.alerts if a.kind in ("collapse", "saturation")}, res.notes

    solved = generate("solved", seed=1, n_steps=100).to_series()
    assert kinds(solved)[0] == {"saturation"}
    doubled = replace(solved, scalars={**solved.scalars, M.REWARD_MEAN: (solved.steps, 2 * solved.reward())})
    got, notes = kinds(doubled)
    assert "collapse" in got and "saturation" not in got
    assert any("its ceiling is unknown" in n and "--reward-max" in n for n in notes), notes
    stated = replace(doubled, meta={**doubled.meta, "reward_max": 2})
    got, notes = kinds(stated)
    assert got == {"saturation"} and not any("ceiling is unknown" in n for n in notes)
    plateau = generate("steady_collapse", seed=2, n_steps=100).to_series()
    assert "collapse" in kinds(plateau)[0]
    shifted = replace(plateau, scalars={**plateau.scalars, M.REWARD_MEAN: (plateau.steps, plateau.reward() + 5)})
    assert "saturation" not in kinds(shifted)[0] and "collapse" in kinds(shifted)[0]


def test_zero_variance_groups_read_a_reward_on_its_own_scale() -> None:
    """All wrong or all right is the reward's place on its scale: off [0, 1] (shifted, summed) its own range. The
    largest reward seen was the ceiling before (max(1, it)), so a reward shifted to [-0.5, 0.5] read 'all wrong'
    at any level, and one that never moved off a scale of its own was called all wrong or all right by its sign."""
    n = 120
    t = np.arange(n)
    sc = {M.ADV_FRAC_ZERO_GROUPS: (t, np.where(t < 60, 0.1, 0.7))}  # groups stop differing from point 60
    h = noisy(np.full(n, 0.6), 0.02)
    solved = np.clip(t / 40, 0, 1)  # learnt by point 40: the groups are all right
    failed = np.where(t < 40, 0.8 * t / 40, 0.1)  # learnt, then lost: all wrong

    def zv(reward: np.ndarray) -> Alert:
        (a,) = [a for a in analyze_series(series(h, reward=reward, scalars=sc)) if a.kind == "zero_variance_groups"]
        return a

    for scale in (lambda r: r, lambda r: r - 0.5, lambda r: 2 * r, lambda r: r + 5):  # the same reward, any scale
        assert zv(scale(solved)).severity == "info", zv(scale(solved)).message
        assert zv(scale(failed)).severity == "warning", zv(scale(failed)).message
    flat = zv(np.full(n, -1.0))
    assert flat.severity == "warning" and "the same at every point so far" in flat.message


def test_groups_that_turn_all_wrong_after_an_easy_start_warn() -> None:
    """Identical groups read "too easy" (info) while the reward is high; when the reward then falls to nothing with
    the groups still identical, the run learns nothing: a warning, with the completions cut at the length limit when
    that is logged (the Sunshine adabalance TRL log: reward 0.9 -> 0 from step ~80, entropy flat, read "too easy" at
    step 30 and nothing after)."""
    n = 120
    t = np.arange(n)
    sc = {M.ADV_FRAC_ZERO_GROUPS: (t, np.full(n, 0.9)), M.LENGTH_TRUNC_FRAC: (t, np.where(t < 70, 0.0, 1.0))}
    reward = np.where(t < 70, 0.9, 0.05)
    al = [a for a in analyze_series(series(noisy(np.full(n, 0.6), 0.02), reward=reward, scalars=sc))
          if a.kind == "zero_variance_groups"]  # fmt: skip
    assert [a.severity for a in al] == ["info", "warning"], [a.message for a in al]
    easy, wrong = al
    assert "too easy" in easy.message and easy.step < 70 <= wrong.step
    cut = wrong.evidence["trunc_frac"]  # the median over the span the groups are read on
    assert "all wrong" in wrong.message and f"; {100 * cut:.0f}% of completions hit the length limit" in wrong.message
    assert 0.5 <= cut <= 1.0 and wrong.evidence["reward"] < 0.5
    still_easy = analyze_series(series(noisy(np.full(n, 0.6), 0.02), reward=np.full(n, 0.9), scalars=sc))
    assert [a.severity for a in still_easy if a.kind == "zero_variance_groups"] == ["info"]
