"""ControlConfig refuses, at construction and in one line naming the field, settings a controller cannot work with:
a target at or above ln V (the uniform distribution's entropy; never reached, the lever pushes up for the whole run),
numbers that are not finite, counts that are not whole, eps_high0 outside its bounds, and a target or band that the
kind would silently ignore. Each of these was accepted before."""

from __future__ import annotations

import math

import numpy as np
import pytest

from entropy_watch.hooks.control import ControlConfig, ControlError, EntropyController

QWEN_V = 151936  # ln V = 11.93 nats
INF, NAN = math.inf, math.nan


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"kind": "repo-r", "target": 12.0, "vocab_size": QWEN_V}, "at or above ln V = 11.93"),
        ({"kind": "adapo", "target": math.log(50), "vocab_size": 50}, "at or above ln V"),  # exactly ln V: uniform only
        ({"kind": "target", "band": (12.5, 13.0), "vocab_size": QWEN_V}, "band low 12.5 nats"),
        ({"kind": "repo-r", "target": INF}, "target=inf"),
        ({"kind": "target", "band": (0.5, INF)}, "band=inf"),
        ({"kind": "target", "band_rel": (0.8, INF)}, "band_rel=inf"),
        ({"kind": "repo-r", "zeta_max": INF}, "zeta_max=inf"),
        ({"kind": "adapo", "eps_max": INF}, "eps_max=inf"),
        ({"kind": "adapo", "kappa": INF}, "kappa=inf"),
        ({"kind": "adapo", "eps_high0": NAN}, "eps_high0=nan"),
        ({"kind": "adapo", "eps_high0": 5.0}, "outside [eps_min, eps_max]"),
        ({"kind": "repo-r", "ref_steps": 2.5}, "ref_steps=2.5"),
        ({"kind": "repo-r", "every": 1.5}, "every=1.5"),
        ({"kind": "repo-r", "vocab_size": 1}, "vocab_size=1"),
        ({"kind": "repo-r", "target": "1.0"}, "target='1.0'"),
        ({"kind": "target", "band": (0.1, 0.2, 0.3)}, "give two numbers"),
        ({"kind": "target", "band": "0.1,0.5"}, "give two numbers"),
        ({"kind": "target", "target": 1.0}, "would ignore target"),
        ({"kind": "adapo", "band": (0.3, 0.6)}, "would ignore it"),
    ],
)
def test_settings_that_cannot_work_are_refused_in_one_line(kwargs: dict, says: str) -> None:
    with pytest.raises(ControlError) as e:
        ControlConfig(**kwargs)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_reachable_settings_are_kept() -> None:
    ln_v = math.log(QWEN_V)
    ControlConfig("repo-r", target=ln_v - 0.01, vocab_size=QWEN_V)
    ControlConfig("target", band=(0.5, ln_v + 1.0), vocab_size=QWEN_V)  # a ceiling above ln V binds never: harmless
    cfg = ControlConfig(
        "adapo", target=np.float32(1.0), ref_steps=np.int64(3), every=np.int64(2), vocab_size=np.int64(50)
    )
    assert EntropyController(cfg, eps_high=0.28).target == pytest.approx(1.0)


def test_a_vocabulary_learned_later_is_checked_then() -> None:
    cfg = ControlConfig("repo-r", target=4.0)  # V unknown: nothing to check against
    cfg.check_vocabulary(QWEN_V)
    with pytest.raises(ControlError, match=r"ln V = 3\.912 \(V = 50\)"):
        cfg.check_vocabulary(50)
