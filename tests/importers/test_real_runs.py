"""Every file in shared/real_runs imports automatically with the columns labels.json names."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from entropy_watch import metrics as M
from entropy_watch.importers import load_log

REAL = Path(__file__).resolve().parents[3] / "shared" / "real_runs"
if not REAL.is_dir():
    REAL = Path("/work/shared/real_runs")
LABELS = json.loads((REAL / "labels.json").read_text()) if (REAL / "labels.json").is_file() else {}

pytestmark = pytest.mark.skipif(not LABELS, reason="shared/real_runs not available")


@pytest.mark.parametrize("name", sorted(LABELS))
def test_real_file_maps_the_labelled_columns(name: str) -> None:
    label = LABELS[name]
    (run,) = load_log(REAL / name)
    assert run.fmt == label["format"]
    assert run.mapping["step"] == label["step"]
    assert run.mapping[M.ENTROPY_MEAN] == label["entropy"]
    assert run.mapping[M.REWARD_MEAN] == label["reward"]
    steps, values = run.series(M.ENTROPY_MEAN)
    assert steps.dtype == np.int64 and values.dtype == np.float64
    assert len(steps) > 50 and np.all(np.diff(steps) > 0)
    assert np.isfinite(values).all()
    # the canonical series is the source column under another name
    assert run.series(M.ENTROPY_MEAN)[1] is run.series(label["entropy"])[1]
    assert Path(run.meta["source"]).resolve() == (REAL / name).resolve()  # absolute; shared/ may be a link
    assert run.meta["importer_version"] and run.meta["entropy_definition"]


def test_rasbt_restart_keeps_the_last_occurrence() -> None:
    (run,) = load_log(REAL / "rasbt__reasoning-from-scratch__ch07-7_3-tracking.csv")
    steps, tps = run.series("tokens_per_sec")
    assert steps[0] == 1 and len(steps) == len(np.unique(steps)) == 500
    assert tps[0] == pytest.approx(19.205315)  # line 7 (after the restart), not line 2 (19.276589)
    assert run.series("total_steps")[1][0] == 500  # the restarted run's setting
    assert [e["kind"] for e in run.events] == ["resume"] and run.events[0]["payload"]["from_step"] == 5
    assert any("kept the last occurrence" in n for n in run.notes)


def test_deep_grpo_sparse_validation_reward() -> None:
    (run,) = load_log(REAL / "befocuss__Deep-GRPO__qwen25-0.5b-gsm8k-deepgrpo-gamma1.0.csv")
    r_steps, _ = run.series(M.REWARD_MEAN)
    e_steps, _ = run.series(M.ENTROPY_MEAN)
    assert r_steps[0] == 0 and e_steps[0] == 1  # step 0 holds only the initial validation
    assert np.all(r_steps[1:] % 5 == 0) and len(r_steps) < len(e_steps) / 4
    assert run.meta["source_run_name"].startswith("Qwen2.5-0.5B-Instruct")
    assert "run_name" in run.meta["text_columns"]
    assert run.mapping[M.LENGTH_MEAN] == "response_length/main_chain/mean"


def test_tinker_step_zero_is_the_first_update() -> None:
    (run,) = load_log(REAL / "arvindcr4__tinker-rl-lab__tinker-arithmetic-llama32-1b.jsonl")
    steps, values = run.series(M.ENTROPY_MEAN)
    assert steps[0] == 0 and values[0] == pytest.approx(0.7731558680534363)
    assert run.series("env/all/by_group/frac_all_good")[0][0] == 0
