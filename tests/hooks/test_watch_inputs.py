"""Watch at its input boundary (issue 11): steps and values are checked at the call, nothing bad reaches a shared
buffer, failures are counted and stored, and one call's synchronous work is bounded whatever the batch size."""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entropy_watch import metrics as M
from entropy_watch.hooks import Watch
from entropy_watch.store import Store


@pytest.mark.parametrize(
    "bad", [lambda w: w.log(2**70, x=1.0), lambda w: w.log(np.uint64(2**64 - 1), x=1.0), lambda w: w.event(2**64, "k")]
)
def test_a_step_beyond_int64_loses_nothing_else(tmp_path: Path, caplog: pytest.LogCaptureFixture, bad) -> None:
    with caplog.at_level(logging.WARNING, logger="entropy_watch"), Watch("big", store=tmp_path, flush_secs=0.05) as w:
        w.log(0, x=0.0)
        bad(w)
        for step in range(1, 195):
            w.log(step, x=float(step))
            if step == 100:
                w.event(step, "k")
    store = Store(tmp_path)
    steps, _ = store.series("big", "x")
    assert steps.tolist() == list(range(195)), "every later scalar is stored"
    assert store.series("big", M.HOOKS_ERRORS)[1][-1] == 1, "hooks/errors is stored"
    assert store.run_info("big").state == "finished"
    assert store.table("big", "events").column("step").to_pylist() == [100]
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "out of range" in text and "disk" not in text


def _step_ok(s: object) -> bool:
    if isinstance(s, bool | np.bool_):
        return False
    if isinstance(s, int | np.integer):
        return 0 <= int(s) <= 2**63 - 1
    if isinstance(s, float):
        return math.isfinite(s) and s.is_integer() and 0 <= s < 2**53
    return False


def _value_ok(v: object) -> bool:
    if isinstance(v, str | bytes):
        return False
    try:
        float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return False
    return True


STEPS = st.one_of(
    st.integers(-5, 2**64 + 5),
    st.integers(0, 50),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([np.uint64(2**64 - 1), np.int64(7), True, "3", None, 3.0, 2.0**60]),
)
VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**1100), 2**1100),
    st.sampled_from(["0.5", "x", 1j, None, np.float32(1.5), b"1"]),
)


@settings(max_examples=25, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(STEPS, VALUES), min_size=1, max_size=12))
def test_any_step_and_value_is_stored_or_counted(calls: list[tuple[object, object]]) -> None:
    """Model: a call is stored iff its step and value are valid (None values are skipped, not errors)."""
    with tempfile.TemporaryDirectory() as tmp:
        with Watch("fuzz", store=tmp, flush_secs=3600) as w:
            for step, value in calls:
                w.log(step, v=value)
        expected = sorted(
            (int(s), float(v))
            for s, v in calls
            if v is not None and _step_ok(s) and _value_ok(v)  # type: ignore
        )
        errors = sum(1 for s, v in calls if not _step_ok(s) or (v is not None and not _value_ok(v)))
        assert w.errors == errors
        tbl = Store(tmp).scalars("fuzz", ["v"])
        got = sorted(zip(tbl.column("step").to_pylist(), tbl.column("value").to_pylist(), strict=True))
        assert len(got) == len(expected)
        for (gs, gv), (es, ev) in zip(got, expected, strict=True):
            assert gs == es and (gv == ev or (math.isnan(gv) and math.isnan(ev)))


def _batch(B: int, T: int, V: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=g) * torch.rand(B, T, 1, generator=g) * 4
    mask = (torch.rand(B, T, generator=g) > 0.2).float()
    return logits, mask


def test_a_large_batch_is_reduced_on_a_sample_within_the_budget(tmp_path: Path) -> None:
    logits, mask = _batch(8, 512, 4096)  # 64 MiB of logits: affordable here, 16.8M elements
    n_valid = int(mask.sum())
    with Watch("full", store=tmp_path, async_stats=False, max_logits_per_call=None) as w:
        full = w.log_tokens(0, logits=logits, mask=mask)
    with Watch("budget", store=tmp_path, async_stats=False, max_logits_per_call=2**20) as w:
        part = w.log_tokens(0, logits=logits, mask=mask)
        again = w.log_tokens(0, logits=logits, mask=mask)
    k = 2**20 // 4096
    assert full[M.TOKENS_COUNT] == n_valid and part[M.TOKENS_COUNT] == n_valid, "k of them computed, all counted"
    assert part == again, "the sample is seeded by the step"
    per_token = torch.special.entr(torch.softmax(logits.double(), -1)).sum(-1)[mask.bool()]
    se = float(per_token.std()) / math.sqrt(k)
    assert abs(part[M.ENTROPY_MEAN] - full[M.ENTROPY_MEAN]) < 5 * se, "an unbiased estimate of the batch mean"
    frac = Store(tmp_path).series("budget", M.HOOKS_ENTROPY_SAMPLE)[1]
    assert frac.tolist() == [pytest.approx(k / n_valid)]
    assert Store(tmp_path).series("full", M.HOOKS_ENTROPY_SAMPLE)[0].size == 0


def test_the_sample_takes_logp_of_token_ids_from_the_same_rows(tmp_path: Path) -> None:
    logits, mask = _batch(2, 64, 50, seed=1)
    ids = torch.randint(0, 50, (2, 64), generator=torch.Generator().manual_seed(2))
    old = torch.log_softmax(logits, -1).gather(-1, ids[..., None]).squeeze(-1)
    adv = torch.tensor([1.0, -1.0])
    with Watch("ids", store=tmp_path, async_stats=False, max_logits_per_call=50 * 16) as w:
        out = w.log_tokens(3, logits=logits, mask=mask, token_ids=ids, old_logp=old, advantages=adv)
    assert out[M.TOKENS_COUNT] == int(mask.sum())  # 16 rows computed, every valid token counted
    assert out[M.RATIO_LOG_MEAN] == pytest.approx(0.0, abs=1e-6), "logp recomputed on the sampled rows == old_logp"


def test_budget_must_be_positive(tmp_path: Path) -> None:
    for bad in (0, -1, 2.5, "big"):
        with pytest.raises(ValueError, match="max_logits_per_call"):
            Watch("x", store=tmp_path, max_logits_per_call=bad)  # type: ignore[arg-type]


def test_diverged_logits_reach_the_store_and_the_critical_alert(tmp_path: Path) -> None:
    """Logits gone NaN must not leave the run looking healthy: entropy/mean is stored as NaN for those steps and the
    verdict is a critical non-finite alert from the first of them."""
    from entropy_watch.analysis import analyze
    from entropy_watch.analysis.series import RunSeries

    g = torch.Generator().manual_seed(0)
    with Watch("diverged", store=tmp_path) as w:
        for step in range(30):
            logits = torch.randn(2, 6, 24, generator=g)
            if step >= 20:
                logits[:] = math.nan
            w.log_tokens(step, logits=logits)
        assert w.errors == 0
    steps, values = Store(tmp_path).series("diverged", M.ENTROPY_MEAN)
    assert steps.tolist() == list(range(30)) and np.isnan(values[20:]).all() and np.isfinite(values[:20]).all()
    v = analyze(RunSeries.from_arrays("diverged", steps, values)).verdict
    assert (v.health, v.kind, v.alerts[0].step) == ("critical", "nonfinite", 20)


@pytest.mark.parametrize(
    "logits, says", [(torch.tensor(1.0), "0-d tensor"), (np.zeros((2, 3, 4)), "ndarray"), ([[0.1]], "list")]
)
def test_logits_that_are_no_tensor_are_refused_saying_what_they_are(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, logits: object, says: str
) -> None:
    with caplog.at_level(logging.WARNING, logger="entropy_watch"), Watch("bad", store=tmp_path) as w:
        w.log_tokens(0, logits=logits)  # type: ignore[arg-type]
        w.log_tokens(1, logits=torch.randn(1, 2, 8))
        assert w.errors == 1
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "logits must be a torch.Tensor (B, T, V), got" in text and says in text
    assert Store(tmp_path).series("bad", M.ENTROPY_MEAN)[0].tolist() == [1]


def test_an_empty_tensor_is_refused_not_stored_as_nan(tmp_path: Path) -> None:
    with Watch("empty", store=tmp_path) as w:
        w.log(0, empty=torch.tensor([]), kept=torch.tensor([1.0, 3.0]))
        assert w.errors == 1
    store = Store(tmp_path)
    assert store.series("empty", "kept")[1].tolist() == [2.0]
    assert store.series("empty", "empty")[0].size == 0
